"""The supervisor of a hub with several web workers: one process of its own that opens the Hub with
its background work (it adopts and watches the model servers, runs the embedded build queue, collects
direct calls, runs drift, alerts and housekeeping) while gunicorn's web workers serve requests.

`aid serve` (cli/serve.py) starts it before gunicorn with `Supervisor.start`, which waits until the
Hub is open, or raises the HubError that kept it from opening (one line, as a web worker's failure).
A thread of the master starts it again when it dies. It ignores Ctrl-C, which reaches the whole
process group: the master stops it with SIGTERM once the web workers are gone, and it stops by itself
when the master is gone (killed). Like the one-process hub, it leaves the model servers running when
it stops; the next start adopts them (`Deployments.reconcile`).

Run as `python -m cli.supervisor SPEC FD`: SPEC is JSON (config overrides, log file and level, whether
this is the first start of this `aid serve`), FD the pipe on which it writes one line: {"ready": true}
or the failure's fields."""

from __future__ import annotations

import json
import logging
import logging.config
import os
import shutil
import signal
import subprocess
import sys
import threading
from pathlib import Path

from cli.startfailure import error_from, failure_fields
from hub.errors import HubError

log = logging.getLogger("cli.supervisor")  # also when it runs as __main__
STOP_WAIT_S = 60.0  # the hub's close flushes the prediction log (30 s at most)
MAX_BACKOFF_S = 30.0


class Supervisor:
    """The master's handle on the supervisor process: start, watch (restart when it died), stop."""

    def __init__(self, overrides: dict, log_file: Path, level: str, verbose: bool, metrics_dir: Path):
        self.spec = {"config": overrides, "log_file": str(log_file), "level": level, "verbose": verbose}
        self.log_file = log_file
        self.metrics_dir = metrics_dir
        self.proc: subprocess.Popen | None = None
        self.stopping = threading.Event()
        self.starting = threading.Lock()  # `stop` waits for a start again under way, then stops that one

    def start(self, first: bool = True) -> None:
        """Start the process and wait until its Hub is open; the HubError when it could not open.
        The `first` start of an `aid serve` empties the metrics folder (an earlier one's counters)."""
        if first:
            shutil.rmtree(self.metrics_dir, ignore_errors=True)
            self.metrics_dir.mkdir(parents=True)
        read_end, write_end = os.pipe()
        spec = json.dumps({**self.spec, "first": first})
        command = [sys.executable, "-m", "cli.supervisor", spec, str(write_end)]
        self.proc = subprocess.Popen(command, pass_fds=(write_end,), stdin=subprocess.DEVNULL)
        os.close(write_end)
        with os.fdopen(read_end) as pipe:
            line = pipe.readline()
        if not line:
            code = self.proc.wait()
            raise HubError(f"The hub did not start: its supervisor exited with {code}. See {self.log_file}.")
        reply = json.loads(line)
        if not reply.get("ready"):
            self.proc.wait()
            raise error_from(reply)
        log.info("the supervisor runs as pid %d", self.proc.pid)

    def watch(self) -> None:
        """Start it again whenever it died, until `stop()`, on a thread of the master."""
        threading.Thread(target=self._watch, name="supervisor-watch", daemon=True).start()

    def _watch(self) -> None:
        failures = 0
        while not self.stopping.wait(min(MAX_BACKOFF_S, 2.0**failures)):
            if self.proc.poll() is None:
                failures = 0
                continue
            self._mark_dead(self.proc.pid)
            log.warning("the supervisor (pid %d) exited with %s; starting it again",
                        self.proc.pid, self.proc.returncode)  # fmt: skip
            try:
                with self.starting:
                    if not self.stopping.is_set():
                        self.start(first=False)
            except Exception as e:  # it runs on; the log says why each try failed
                failures += 1
                log.error("starting the supervisor again failed (%d in a row): %s", failures, e)

    def stop(self) -> None:
        """SIGTERM, then SIGKILL what did not stop within STOP_WAIT_S."""
        self.stopping.set()
        with self.starting:
            if self.proc is None or self.proc.poll() is not None:
                return
            self.proc.terminate()
            try:
                self.proc.wait(timeout=STOP_WAIT_S)
            except subprocess.TimeoutExpired:
                log.warning("the supervisor did not stop within %.0f s; killing it", STOP_WAIT_S)
                self.proc.kill()
                self.proc.wait()

    def _mark_dead(self, pid: int) -> None:
        from prometheus_client.multiprocess import mark_process_dead

        mark_process_dead(pid, str(self.metrics_dir))


def main(argv: list[str]) -> int:
    """The supervisor process: open the Hub, say so on the pipe, run until SIGTERM or the master's end."""
    spec, pipe = json.loads(argv[0]), os.fdopen(int(argv[1]), "w")
    log_file = Path(spec["log_file"])
    from cli.logfile import logging_config

    logging.config.dictConfig(logging_config(log_file, spec["level"], spec["verbose"]))
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # the master stops us after its web workers
    stopping = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stopping.set())
    master = os.getppid()
    try:
        hub = _open_hub(spec)
    except Exception as e:  # the boundary: any reason becomes one line in the master
        log.info("The hub's supervisor did not start: %s", e, exc_info=True)
        pipe.write(json.dumps(failure_fields(e, log_file)) + "\n")
        return 1
    pipe.write('{"ready": true}\n')
    pipe.close()
    while not stopping.wait(1.0) and os.getppid() == master:
        pass
    log.info("the supervisor stops")
    hub.close()
    return 0


def _open_hub(spec: dict):
    from hub.config import Config
    from hub.hub import Hub

    return Hub(Config.load(**spec["config"]), seed=spec["first"])


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
