"""The monitor's schema steps, registered with the hub's one migration runner (database.migrations)."""

from __future__ import annotations

from database.migrations import add_column, add_index, create_tables, register
from monitor.tables import TABLES, DriftRun, Feedback

register(
    "monitor",
    [
        (1, "create tables", create_tables(TABLES)),
        (2, "drift runs", create_tables([DriftRun])),
        (3, "monitor_feedback.client", add_column("monitor_feedback", Feedback.client)),
        (4, "feedback by prediction and client", add_index(Feedback, ("prediction_id", "client"))),
    ],
)
