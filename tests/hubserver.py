"""A real hub (`aid serve`) in a subprocess on a free port, with the test caches shared."""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import httpx

from runners.process import PORT_TAKEN, PORT_TRIES
from tests.postgres import _free_port

REPO = Path(__file__).resolve().parent.parent
CACHE = REPO / ".cache"
AID = str(Path(sys.executable).parent / "aid")


def cache_env() -> dict:
    """Environment caches every test hub shares, so each environment is built once per machine; and
    no scheduled drift runs (tests run drift when they mean to: tests/test_drift.py)."""
    return {
        "AIDHUB_DRIFT_EVERY": "0",
        "AIDHUB_WHEELHOUSE": str(CACHE / "wheelhouse"),
        "AIDHUB_ENVS": str(CACHE / "envs"),
        "AIDHUB_UV_CACHE": str(CACHE / "uv"),
    }


class HubProcess:
    def __init__(
        self, home: Path, runner: str = "process", extra_env: dict | None = None, workers: int | None = None
    ):
        self.home = home
        self.workers = workers  # `aid serve --workers N`; None: its default
        self.port = _free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.env = {**os.environ, **cache_env(), "AIDHUB_HOME": str(home), "AIDHUB_RUNNER": runner}
        self.env.update(extra_env or {})
        self.env.pop("AIDHUB_URL", None)
        self.proc: subprocess.Popen | None = None

    def start(self, timeout: float = 60.0) -> HubProcess:
        """Start `aid serve` and wait until it answers. A port taken between `_free_port` finding
        it and the hub binding it (by an outgoing connection, say) is left for another."""
        for attempt in range(1, PORT_TRIES + 1):
            printed = self.home / "serve.out"
            before = printed.stat().st_size if printed.exists() else 0
            try:
                return self._start(timeout)
            except RuntimeError:
                taken = PORT_TAKEN in printed.read_bytes()[before:].decode(errors="replace")
                if attempt == PORT_TRIES or not taken:
                    raise
                self.port = _free_port()
                self.url = f"http://127.0.0.1:{self.port}"

    def _start(self, timeout: float) -> HubProcess:
        self.home.mkdir(parents=True, exist_ok=True)
        log = open(self.home / "serve.out", "ab")
        command = [AID, "serve", "--port", str(self.port)]
        command += ["--workers", str(self.workers)] if self.workers else []
        self.proc = subprocess.Popen(
            command,
            env=self.env,
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"aid serve exited: {self.output()}")
            try:
                if httpx.get(f"{self.url}/v2/health/live", timeout=1).status_code == 200:
                    return self
            except httpx.TransportError:
                time.sleep(0.2)
        raise TimeoutError(f"the hub did not answer within {timeout}s")

    @property
    def token(self) -> str:
        """The admin token the hub wrote at its first start."""
        return (self.home / "admin-token").read_text().strip()

    @property
    def headers(self) -> dict:
        return {"Authorization": f"Bearer {self.token}"}

    def output(self) -> str:
        """The end of what `aid serve` printed, and of the hub's own log file."""
        printed = (self.home / "serve.out").read_text(errors="replace")[-3000:]
        logged = self.home / "logs" / "hub.log"
        return printed + (logged.read_text(errors="replace")[-3000:] if logged.is_file() else "")

    def stop(self) -> None:
        if self.proc and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            self.proc.wait(timeout=30)

    def kill(self) -> None:
        """Crash the hub: SIGKILL to its whole process group (gunicorn's master and worker)."""
        with contextlib.suppress(ProcessLookupError):  # killed already
            os.killpg(self.proc.pid, signal.SIGKILL)
        self.proc.wait(timeout=30)

    def undeploy_all(self) -> None:
        for model in httpx.get(f"{self.url}/api/v1/models").json()["models"]:
            detail = httpx.get(f"{self.url}/api/v1/models/{model['name']}").json()
            for v in detail["versions"]:
                if v["deployment"]["status"] in ("ready", "starting"):
                    httpx.post(
                        f"{self.url}/api/v1/models/{model['name']}@{v['version']}/undeploy",
                        headers=self.headers,
                        timeout=60,
                    )

    def aid(self, *args: str, timeout: float = 900) -> subprocess.CompletedProcess:
        return subprocess.run(
            [AID, "--hub", self.url, *args], capture_output=True, text=True, timeout=timeout, env=self.env
        )


def wait_for(condition, timeout: float, what: str, every: float = 0.05):
    """The first truthy value `condition()` gives within `timeout` s; AssertionError naming `what`."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if found := condition():
            return found
        time.sleep(every)
    raise AssertionError(f"{what} did not happen within {timeout} s")
