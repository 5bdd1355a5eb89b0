"""What every runner does once it has launched a server: wait until /readyz answers, or stop it and
fail with the tail of its log. The runners differ only in how they look at their server (`Launched`)."""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass

import httpx

from .base import LogFn, RunnerError, ServeSpec

WAITING_NOTE_S = 5.0  # a "still waiting" log line this often while a server starts
CHECK_EVERY_S = 0.5  # how often the failure checks run (the container's read the engine)
POLL_S = 0.1


@dataclass(frozen=True)
class Launched:
    """A server that was just launched, as the readiness loop sees it; each runner fills it in."""

    url: str  # base URL; ready when GET {url}/readyz answers 200
    log_name: str  # where its whole log is, for the message: "the server log (/x/server.log)"
    setup_failed: Callable[[], bool]  # loading the model raised (the flavors reported it)
    exited: Callable[[], bool]  # the server is gone
    stop: Callable[[], None]  # stop it and leave nothing running; a no-op when gone
    stop_and_tail: Callable[[], str]  # stop it; the last lines of its log, however they are kept


def server_url(host: str, port: int) -> str:
    """http://host:port, with an IPv6 host in brackets."""
    return f"http://{f'[{host}]' if ':' in host else host}:{port}"


def wait_until_ready(spec: ServeSpec, server: Launched, timeout: float, log: LogFn) -> None:
    """Return when `server` answers /readyz. When it fails to set up, exits or is not ready after
    `timeout` seconds, stop it and raise RunnerError with its log tail; when anything else is raised
    meanwhile (a cancelled build's log), stop it too."""
    began = time.monotonic()
    try:
        failure = _failure_while_polling(spec, server, timeout, log)
    except BaseException:
        server.stop()
        raise
    if failure:
        tail = server.stop_and_tail()
        raise RunnerError(
            f"Model {spec.name!r} version {spec.version!r} did not start: {failure}. Read "
            f"{server.log_name}, fix the package, publish a new version and deploy it.",
            log_tail=tail,
        )
    # the seconds from launch to ready: the server's own start-up, for the build log's readers
    log(
        f"{spec.name} {spec.version} is ready at {server.url} ({time.monotonic() - began:.1f} s after launch)"
    )


def _failure_while_polling(spec: ServeSpec, server: Launched, timeout: float, log: LogFn) -> str:
    """'' once the server answers /readyz; else what went wrong."""
    began = noted = time.monotonic()
    next_check = began
    with httpx.Client(timeout=2.0, trust_env=False) as client:
        while (now := time.monotonic()) < began + timeout:
            if now - noted >= WAITING_NOTE_S:
                noted = now
                log(f"waiting for {spec.name} {spec.version} to be ready ({now - began:.0f} s)")
            if now >= next_check:
                next_check = now + CHECK_EVERY_S
                if server.setup_failed():
                    return "loading the model raised an exception"
                if server.exited():
                    return "the server exited before it was ready"
            if _answers_ready(client, server.url):
                return ""
            time.sleep(POLL_S)
    return f"the server was not ready after {timeout:.0f} s"


def _answers_ready(client: httpx.Client, url: str) -> bool:
    try:
        return client.get(f"{url}/readyz").status_code == 200
    except httpx.HTTPError:
        return False
