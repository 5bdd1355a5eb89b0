"""What the hub reports to Prometheus at scrape time, beside the counters it keeps as calls happen:
each deployed version's state (up, feedback accuracy), read from the deployments and the rollups."""

from __future__ import annotations

import logging

from monitor import scorecard
from monitor.metrics import VersionState
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
