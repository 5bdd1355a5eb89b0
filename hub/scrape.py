"""What the hub reports to Prometheus from its database: each deployed version's state (up, feedback
accuracy) at scrape time, and, at start, the totals its counters continue from.

With several web workers, one process seeds the counters (the supervisor, at its first start only:
the counters of a supervisor that died stay in its multiprocess files), and every process writes its
sampled gauges every second (`GaugeRefresh`)."""

from __future__ import annotations

import logging

from hub.periodic import Periodic
from monitor import scorecard
from monitor.metrics import Metrics, VersionState
from registry.models import DeploymentRow, ModelRow, VersionRow
from vocab.states import DeploymentStatus

log = logging.getLogger(__name__)


def version_states() -> list[VersionState]:
    """One state per deployment row (a stopped one is down); [] when the database is away."""
    try:
        rows = list(DeploymentRow.select(DeploymentRow, VersionRow, ModelRow).join(VersionRow).join(ModelRow))
        feedback = scorecard.feedback_by_version([row.version.id for row in rows])
        return [_state(row, feedback[row.version.id]) for row in rows]
    except Exception:  # a scrape must answer even then; the log says why the states are missing
        log.exception("Reading the deployments for /metrics failed")
        return []


def _state(row: DeploymentRow, feedback: dict) -> VersionState:
    return VersionState(
        model=row.version.model.name, version=row.version.version,
        up=row.status == DeploymentStatus.READY,
        accuracy=feedback["accuracy"], accuracy_low=feedback["accuracy_low"],
    )  # fmt: skip


def seed_counters(metrics: Metrics) -> None:
    """Start the prediction and feedback counters and the latency histogram at the totals the rollups
    hold, so that a restart of the hub is not a counter reset to Prometheus and `rate()` stays sane."""
    try:
        versions = list(VersionRow.select(VersionRow, ModelRow).join(ModelRow))
        totals = scorecard.totals_by_version([v.id for v in versions])
        latency = scorecard.latency_by_version([v.id for v in versions])
    except Exception:  # the hub starts anyway; its counters start at zero
        log.exception("Reading the totals to start the counters from failed")
        return
    for version in versions:
        if totals.get(version.id):
            metrics.seed(version.model.name, version.version, totals[version.id], latency[version.id])


class GaugeRefresh(Periodic):
    """Writes this process's sampled gauges (log queue, drops) for the other processes' scrapes."""

    name = "gauge-refresh"
    failure = "Writing the sampled gauges failed"
    interval = 1.0

    def __init__(self, metrics: Metrics) -> None:
        super().__init__()
        self.metrics = metrics

    @classmethod
    def started_if_shared(cls, metrics: Metrics) -> GaugeRefresh:
        """Running when the metrics are shared by several processes; `stop()` either way."""
        refresh = cls(metrics)
        if metrics.shared:
            refresh.start()
        return refresh

    def run_once(self) -> None:
        self.metrics.refresh()
