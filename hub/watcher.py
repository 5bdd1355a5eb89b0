"""The watcher: notices deployed servers that stopped, marks them unhealthy and restarts them with backoff."""

from __future__ import annotations

import logging
import time

from hub.deployments import Deployments
from hub.periodic import Periodic
from registry.models import DeploymentRow
from vocab.states import SERVING, DeploymentStatus

log = logging.getLogger(__name__)
MAX_BACKOFF_S = 60.0


def backoff(failures: int) -> float:
    """Seconds before the next restart after `failures` failed ones: 1, 2, 4, ... at most 60."""
    return min(MAX_BACKOFF_S, 2.0**failures)


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

    def run_once(self) -> None:
        self.check()

    def check(self) -> None:
        """One pass over the deployments that should serve."""
        now = self.clock()
        rows = DeploymentRow.select().where(DeploymentRow.status.in_(SERVING))
        for row in rows:
            if row.status == DeploymentStatus.READY:
                if not self.deployments.alive(row):
                    self._down(row, now)
            elif now >= self.next_try.get(row.id, 0.0):
                self._restart(row)

    def _down(self, row: DeploymentRow, now: float) -> None:
        name = f"{row.version.model.name}@{row.version.version}"
        log.warning("%s stopped serving at %s; restarting", name, row.url)
        if self.deployments.mark_unhealthy(row, f"The server of {name} stopped; the hub restarts it."):
            self.failures.pop(row.id, None)
            self.next_try[row.id] = now + backoff(0)

    def _restart(self, row: DeploymentRow) -> None:
        name = f"{row.version.model.name}@{row.version.version}"
        try:
            instance = self.deployments.restart(row)
        except Exception as e:
            failures = self.failures[row.id] = self.failures.get(row.id, 0) + 1
            delay = backoff(failures)
            self.next_try[row.id] = self.clock() + delay
            first = str(e).splitlines()[0] if str(e) else e.__class__.__name__
            why = f"Restart {failures} of {name} failed: {first} Next try in {delay:.0f} s."
            log.warning(why)
            self.deployments.mark_unhealthy(row, why)
            return
        log.info("%s serves again at %s", name, instance.url)
        self.failures.pop(row.id, None)
        self.next_try.pop(row.id, None)
