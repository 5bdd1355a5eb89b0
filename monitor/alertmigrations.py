"""The alerts' schema steps: a component of their own in the hub's one migration runner."""

from __future__ import annotations

from database.migrations import create_tables, register
from monitor.alerttables import TABLES

register("alerts", [(1, "alert rules, states, history and webhook attempts", create_tables(TABLES))])
