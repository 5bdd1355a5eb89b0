"""The monitor's schema steps, registered with the hub's one migration runner (database.migrations)."""

from __future__ import annotations

from database.migrations import create_tables, register
from monitor.tables import TABLES, DriftRun

register(
    "monitor",
    [
        (1, "create tables", create_tables(TABLES)),
        (2, "drift runs", create_tables([DriftRun])),
    ],
)
