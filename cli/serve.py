"""`aid serve`: the hub's web app under gunicorn, in N gevent web workers (`--workers`).

The hub's request path is I/O (waiting on model servers); gevent serves it at a quarter of the CPU per
request of gunicorn's thread worker, which matters when the hub shares cores with the models it serves.

One worker (N = 1) opens the whole Hub: it serves requests and supervises the model servers, runs the
builds, the watcher and the other background loops, as one process. With N > 1 that supervision runs
in one process of its own (cli/supervisor.py), started before gunicorn and stopped after it, and each
web worker opens the Hub without its background work (hub/processes.py): predictions are routed from
the database, builds go to the queue file in the home. Prometheus counts in every process then
(prometheus_client's multiprocess mode, in `home`/metrics, emptied at each start).

The default N is half the cores (at least 1): the models serve on the same cores and need CPU for
every call the web workers forward, so the other half is left to them. On one to three cores it is 1,
the single process of old, with no supervisor process and no file-backed metrics. Measured on two
cores (`python -m benchmarks.load`; the model server and wrk on the same cores): calls the model
answers, 2,000 a second with one web worker or two (the model server is the bottleneck); calls the
hub refuses itself (the web tier alone), 5,200 a second with one and 12,000 with two; and while
other jobs loaded the machine, two workers answered 0.77-0.98 times what one did. A second worker
helps where the web tier, not the model, is short of a core.

The Hub is opened in the worker, after gevent has patched the standard library. When that fails (a
HubError such as a bad AIDHUB_DATABASE_URL or no container engine, or anything else), the worker hands
the error to the master and stops it quietly; `serve` raises it there, for `aid` to print as one line.
The traceback goes to the log file only."""

from __future__ import annotations

import atexit
import gc
import logging
import os
import signal
import sys
from dataclasses import replace
from pathlib import Path

from gunicorn.app.base import BaseApplication
from gunicorn.glogging import Logger

from cli.logfile import logging_config
from cli.startfailure import StartFailure
from cli.supervisor import Supervisor
from hub.config import Config
from hub.errors import HubError

log = logging.getLogger(__name__)
GUNICORN_FAILURES = {3: "the worker failed to boot", 4: "the app failed to load"}
MULTIPROCESS_ENV = "PROMETHEUS_MULTIPROC_DIR"


def default_workers() -> int:
    """Half the cores this process may run on, at least 1 (see the module's docstring)."""
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1
    return max(1, cores // 2)


class NoAccessLog(Logger):
    """gunicorn's logger without the access log: `logconfig_dict` would turn it on."""

    def access(self, resp, req, environ, request_time) -> None:
        pass


class HubServer(BaseApplication):
    def __init__(self, config: Config, connections: int, log_file: Path, logging_dict: dict,
                 workers: int = 1, supervisor: Supervisor | None = None):  # fmt: skip
        self.hub_config = config
        self.connections = connections
        self.logging_dict = logging_dict
        self.workers = workers
        self.supervisor = supervisor  # with several web workers
        self.failure = StartFailure(log_file)
        super().__init__()

    def load_config(self):
        self.cfg.set("bind", f"{self.hub_config.host}:{self.hub_config.port}")
        self.cfg.set("workers", self.workers)
        self.cfg.set("worker_class", "gunicorn.workers.ggevent.GeventPyWSGIWorker")
        self.cfg.set("worker_connections", self.connections)
        self.cfg.set("timeout", 300)
        self.cfg.set("graceful_timeout", 10)
        self.cfg.set("accesslog", None)
        self.cfg.set("loglevel", logging.getLevelName(self.logging_dict["root"]["level"]).lower())
        self.cfg.set("logconfig_dict", self.logging_dict)
        self.cfg.set("logger_class", NoAccessLog)
        if self.supervisor is not None:
            self.cfg.set("when_ready", self._start_supervisor)
            self.cfg.set("child_exit", _worker_exited)
        if "control_socket_disable" in self.cfg.settings:  # gunicorn 27: no control socket in $HOME
            self.cfg.set("control_socket_disable", True)

    def load(self):
        try:
            app = self._app()
        except Exception as e:  # the boundary: any reason becomes one line in the master
            log.info("The hub did not start: %s", e, exc_info=True)
            self.failure.record(e)
            os.kill(os.getppid(), signal.SIGTERM)  # the master stops without a "worker failed" error
            sys.exit(0)
        gc.collect()  # what is loaded now lives as long as the worker: the collector's full passes
        gc.freeze()  # skip it (tens of ms each, in the p99 of whatever call they interrupt)
        return app

    def _start_supervisor(self, arbiter) -> None:
        """In gunicorn's master once its socket is bound (so a second hub on the port stops before it
        touches the home) and before the web workers start."""
        try:
            self.supervisor.start(first=True)
        except HubError as e:
            self.failure.record(e)
            raise SystemExit(1) from e
        self.supervisor.watch()

    def _app(self):
        from web.app import create_app

        if self.workers == 1:
            return create_app(self.hub_config)  # the whole hub, closed when the worker exits
        from hub.hub import Hub

        hub = Hub(self.hub_config, background=False)  # the supervisor does the background work
        atexit.register(hub.close)
        return create_app(self.hub_config, hub)


def _worker_exited(server, worker) -> None:
    """gunicorn's master, when a web worker exited: its live gauges leave the sums, its counters stay."""
    from prometheus_client.multiprocess import mark_process_dead

    mark_process_dead(worker.pid)


def serve(
    config: Config,
    log_file: Path,
    level: str = "info",
    verbose: bool = False,
    connections: int = 1000,
    workers: int = 1,
) -> None:
    """Run the hub until Ctrl-C or SIGTERM; the HubError that kept it from starting, if one did."""
    logging_dict = logging_config(log_file, level, verbose)
    supervisor = _supervisor(config, log_file, level, verbose) if workers > 1 else None
    if supervisor is None:
        os.environ.pop(MULTIPROCESS_ENV, None)  # one process: metrics in its own memory
    config = replace(config, metrics_dir=os.environ.get(MULTIPROCESS_ENV, ""))  # as the workers see it
    server = HubServer(config, connections, log_file, logging_dict, workers, supervisor)
    master = os.getpid()
    try:
        server.run()
    except SystemExit as e:
        if os.getpid() != master:  # a worker process leaving through the master's frames
            raise
        _raise_failure(server.failure.error(), e.code, log_file)
    finally:
        if supervisor is not None and os.getpid() == master:
            supervisor.stop()


def _supervisor(config: Config, log_file: Path, level: str, verbose: bool) -> Supervisor:
    """The supervisor of several web workers, started when gunicorn is ready; their metrics shared."""
    folder = config.home / "metrics"  # emptied when the supervisor first starts
    os.environ[MULTIPROCESS_ENV] = str(folder)  # before any process imports prometheus_client
    overrides = {"home": str(config.home), "runner": config.runner, "host": config.host, "port": config.port}
    return Supervisor(overrides, log_file, level, verbose, folder)


def _raise_failure(error: HubError | None, code, log_file: Path) -> None:
    if error is not None:
        raise error
    if code in GUNICORN_FAILURES:
        raise HubError(f"The hub did not start: {GUNICORN_FAILURES[code]}. The log is in {log_file}.")
    if code:
        raise SystemExit(code)
