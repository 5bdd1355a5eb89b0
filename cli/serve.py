"""`aid serve`: the hub's web app under gunicorn: one gevent worker process.

The hub's request path is I/O (waiting on model servers); gevent serves it at a quarter of the CPU per
request of gunicorn's thread worker, which matters when the hub shares cores with the models it serves.

The Hub is opened in the worker, after gevent has patched the standard library. When that fails (a
HubError such as a bad AIDHUB_DATABASE_URL or no container engine, or anything else), the worker hands
the error to the master and stops it quietly; `serve` raises it there, for `aid` to print as one line.
The traceback goes to the log file only."""

from __future__ import annotations

import json
import logging
import os
import signal
import sys
import tempfile
from pathlib import Path

from gunicorn.app.base import BaseApplication
from gunicorn.glogging import Logger

from cli.logfile import logging_config
from hub.config import Config
from hub.errors import HubError, database_errors, public

log = logging.getLogger(__name__)
GUNICORN_FAILURES = {3: "the worker failed to boot", 4: "the app failed to load"}


class StartFailure:
    """Why the worker could not open the hub, in an unnamed file that master and worker share."""

    def __init__(self, log_file: Path) -> None:
        self.file = tempfile.TemporaryFile()
        self.log_file = log_file

    def record(self, error: Exception) -> None:
        if isinstance(error, database_errors()):
            error = public(error)
        if not isinstance(error, HubError):  # a bug, or a failure the hub does not name yet
            what = f"{error.__class__.__name__}: {error}"
            error = HubError(f"The hub did not start: {what}. The traceback is in {self.log_file}.")
        fields = {"message": error.message, "errors": error.errors, "status": error.status}
        self.file.write(json.dumps(fields).encode())
        self.file.flush()

    def error(self) -> HubError | None:
        self.file.seek(0)
        data = self.file.read()
        if not data:
            return None
        fields = json.loads(data)
        error = HubError(fields["message"], fields["errors"])
        error.status = fields["status"]
        return error


class NoAccessLog(Logger):
    """gunicorn's logger without the access log: `logconfig_dict` would turn it on."""

    def access(self, resp, req, environ, request_time) -> None:
        pass


class HubServer(BaseApplication):
    def __init__(self, config: Config, connections: int, log_file: Path, logging_dict: dict):
        self.hub_config = config
        self.connections = connections
        self.logging_dict = logging_dict
        self.failure = StartFailure(log_file)
        super().__init__()

    def load_config(self):
        self.cfg.set("bind", f"{self.hub_config.host}:{self.hub_config.port}")
        self.cfg.set("workers", 1)  # the hub owns its model servers: one process supervises them
        self.cfg.set("worker_class", "gunicorn.workers.ggevent.GeventPyWSGIWorker")
        self.cfg.set("worker_connections", self.connections)
        self.cfg.set("timeout", 300)
        self.cfg.set("graceful_timeout", 10)
        self.cfg.set("accesslog", None)
        self.cfg.set("loglevel", logging.getLevelName(self.logging_dict["root"]["level"]).lower())
        self.cfg.set("logconfig_dict", self.logging_dict)
        self.cfg.set("logger_class", NoAccessLog)
        if "control_socket_disable" in self.cfg.settings:  # gunicorn 27: no control socket in $HOME
            self.cfg.set("control_socket_disable", True)

    def load(self):
        try:
            from web.app import create_app

            return create_app(self.hub_config)
        except Exception as e:  # the boundary: any reason becomes one line in the master
            log.info("The hub did not start: %s", e, exc_info=True)
            self.failure.record(e)
            os.kill(os.getppid(), signal.SIGTERM)  # the master stops without a "worker failed" error
            sys.exit(0)


def serve(
    config: Config, log_file: Path, level: str = "info", verbose: bool = False, connections: int = 1000
) -> None:
    """Run the hub until Ctrl-C or SIGTERM; the HubError that kept it from starting, if one did."""
    server = HubServer(config, connections, log_file, logging_config(log_file, level, verbose))
    master = os.getpid()
    try:
        server.run()
    except SystemExit as e:
        if os.getpid() != master:  # the worker process leaving through the master's frames
            raise
        _raise_failure(server.failure.error(), e.code, log_file)


def _raise_failure(error: HubError | None, code, log_file: Path) -> None:
    if error is not None:
        raise error
    if code in GUNICORN_FAILURES:
        raise HubError(f"The hub did not start: {GUNICORN_FAILURES[code]}. The log is in {log_file}.")
    if code:
        raise SystemExit(code)
