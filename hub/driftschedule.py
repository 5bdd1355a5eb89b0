"""Scheduled drift runs: every serving version is compared with its reference every AIDHUB_DRIFT_EVERY
(default 1h) and after every AIDHUB_DRIFT_AFTER_CALLS new calls (default 1,000), whichever comes first.
A version with too few calls for a run is skipped until it has them; a run that fails is stored as
failed and the loop goes on."""

from __future__ import annotations

import logging
from collections.abc import Callable
from datetime import timedelta

from hub.errors import HubError
from hub.periodic import Periodic
from monitor import driftruns
from registry.models import DeploymentRow, VersionRow
from vocab.states import DeploymentStatus
from vocab.times import utcnow

log = logging.getLogger(__name__)
CHECK_EVERY_S = 60.0


class DriftSchedule(Periodic):
    name = "drift-schedule"
    failure = "Checking which versions are due a drift run failed"
    interval = CHECK_EVERY_S

    def __init__(self, run: Callable[[VersionRow], None], every: timedelta, after_calls: int):
        super().__init__()
        self.run = run  # runs drift for one version now (Hub.drift with the default window)
        self.every = every
        self.after_calls = after_calls

    def run_once(self) -> list[VersionRow]:
        return self.check()

    def check(self) -> list[VersionRow]:
        """Run drift for every serving version that is due; the versions it ran for."""
        ran = []
        for version in self._serving():
            if self.due(version.id):
                try:
                    self.run(version)
                except HubError as e:  # too few calls yet: not an error
                    log.debug("No drift run for %s@%s: %s", version.model.name, version.version, e)
                    continue
                ran.append(version)
        return ran

    def due(self, version_id: int) -> bool:
        last = driftruns.latest_run(version_id)
        if last is None:
            return True
        if utcnow() - last.created_at >= self.every:
            return True
        return driftruns.calls_since(version_id, last.created_at) >= self.after_calls

    def _serving(self) -> list[VersionRow]:
        ready = DeploymentRow.status == DeploymentStatus.READY
        return list(VersionRow.select().join(DeploymentRow).where(ready))
