"""The watcher: notices deployed servers that stopped, marks them unhealthy and restarts them with backoff.

While the container engine does not answer, it cannot say whether a container runs, and nothing can
be started or replaced; its containers may well serve on (Podman's do, under conmon). So a ready
server is then judged by its own /readyz: one that answers keeps serving, with a note on its
deployment (`error`) that it cannot be restarted or replaced until the engine is back; one that does
not is marked unhealthy, and its restarts fail with the engine's message and back off at most
ENGINE_RETRY_S, so it serves again soon after the engine is back. The note goes once the engine
answers again.
"""

from __future__ import annotations

import logging
import time

import httpx

from hub.deployments import Deployments
from hub.periodic import Periodic
from registry.models import DeploymentRow
from runners.engine import EngineAway
from vocab.states import SERVING, DeploymentStatus

log = logging.getLogger(__name__)
MAX_BACKOFF_S = 60.0
ENGINE_RETRY_S = 5.0  # the most between restarts that failed because the engine did not answer
READY_TIMEOUT_S = 5.0  # how long a server may take to answer /readyz while the engine is away
ENGINE_NOTE_START = "The container engine at DOCKER_HOST="


def backoff(failures: int) -> float:
    """Seconds before the next restart after `failures` failed ones: 1, 2, 4, ... at most 60."""
    return min(MAX_BACKOFF_S, 2.0**failures)


def engine_note(docker_host: str) -> str:
    """What a ready deployment says while the container engine does not answer."""
    return (
        f"{ENGINE_NOTE_START}{docker_host} does not answer; this server still serves but cannot be "
        "restarted or replaced until it is back."
    )


def answers(url: str) -> bool:
    """Whether the model server at `url` answers its readiness check (GET /readyz: 200)."""
    try:
        with httpx.Client(timeout=READY_TIMEOUT_S, trust_env=False) as client:
            return client.get(f"{url}/readyz").status_code == 200
    except httpx.HTTPError:
        return False


class Watcher(Periodic):
    name = "watcher"
    failure = "Checking the deployed servers failed"

    def __init__(self, deployments: Deployments, interval: float, clock=time.monotonic):
        super().__init__()
        self.deployments = deployments
        self.interval = interval
        self.clock = clock
        self.failures: dict[int, int] = {}  # deployment id -> restarts that failed in a row
        self.next_try: dict[int, float] = {}
        self.engine_away = False  # the last engine call found no engine answering

    def run_once(self) -> None:
        self.check()

    def check(self) -> None:
        """One pass over the deployments that should serve."""
        now = self.clock()
        away = None  # once one server's engine call found the engine away, the others skip theirs
        # read them all first: a write while SQLite still reads the rows could not take its lock
        rows = list(DeploymentRow.select().where(DeploymentRow.status.in_(SERVING)))
        for row in rows:
            if row.status == DeploymentStatus.READY:
                away = self._watch(row, now, away)
            elif now >= self.next_try.get(row.id, 0.0):
                self._restart(row)

    def _watch(self, row: DeploymentRow, now: float, away: EngineAway | None) -> EngineAway | None:
        """Check one ready server; the EngineAway this round has met, if any."""
        if away is None:
            try:
                alive = self.deployments.alive(row)
            except EngineAway as e:
                away = e
            else:
                self._engine_answers(row)
                if not alive:
                    name = _name(row)
                    self._down(row, now, f"The server of {name} stopped; the hub restarts it.")
                return None
        self._engine_is_away(away)
        if answers(row.url):
            self.deployments.note(row, engine_note(away.docker_host))
        else:
            why = (
                f"The server of {_name(row)} does not answer, and the container engine at "
                f"DOCKER_HOST={away.docker_host} does not either; the hub restarts the server once "
                "the engine is back."
            )
            self._down(row, now, why)
        return away

    def _engine_answers(self, row: DeploymentRow) -> None:
        if self.engine_away:
            log.info("The container engine answers again")
            self.engine_away = False
        if (row.error or "").startswith(ENGINE_NOTE_START):
            self.deployments.note(row, "")

    def _engine_is_away(self, away: EngineAway) -> None:
        if not self.engine_away:
            log.warning("%s Ready servers are judged by their /readyz until it is back.", away)
            self.engine_away = True

    def _down(self, row: DeploymentRow, now: float, why: str) -> None:
        log.warning("%s stopped serving at %s; restarting", _name(row), row.url)
        if self.deployments.mark_unhealthy(row, why):
            self.failures.pop(row.id, None)
            self.next_try[row.id] = now + backoff(0)

    def _restart(self, row: DeploymentRow) -> None:
        name = _name(row)
        try:
            instance = self.deployments.restart(row)
        except Exception as e:
            failures = self.failures[row.id] = self.failures.get(row.id, 0) + 1
            delay = min(backoff(failures), ENGINE_RETRY_S) if isinstance(e, EngineAway) else backoff(failures)
            self.next_try[row.id] = self.clock() + delay
            first = str(e).splitlines()[0] if str(e) else e.__class__.__name__
            why = f"Restart {failures} of {name} failed: {first} Next try in {delay:.0f} s."
            log.warning(why)
            self.deployments.mark_unhealthy(row, why)
            return
        log.info("%s serves again at %s", name, instance.url)
        self.failures.pop(row.id, None)
        self.next_try.pop(row.id, None)


def _name(row: DeploymentRow) -> str:
    return f"{row.version.model.name}@{row.version.version}"
