"""What the hub reports to Prometheus from its database: each deployed version's state (up, feedback
accuracy) at scrape time, and, at start, the totals its counters continue from."""

from __future__ import annotations

import logging

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
    """Start the prediction and feedback counters at the totals the rollups hold, so that a restart
    of the hub is not a counter reset to Prometheus and `rate()` stays sane."""
    try:
        versions = list(VersionRow.select(VersionRow, ModelRow).join(ModelRow))
        totals = scorecard.totals_by_version([v.id for v in versions])
    except Exception:  # the hub starts anyway; its counters start at zero
        log.exception("Reading the totals to start the counters from failed")
        return
    for version in versions:
        if totals.get(version.id):
            metrics.seed(version.model.name, version.version, totals[version.id])
