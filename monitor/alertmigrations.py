"""The alerts' schema steps: a component of their own in the hub's one migration runner."""

from __future__ import annotations

from database.migrations import add_column, create_tables, register
from monitor.alerttables import TABLES, AlertEvent, AlertRule


def _actions(db) -> None:
    """A rule's action (rollback), and what it did on a change."""
    add_column("monitor_alert_rule", AlertRule.action)(db)
    add_column("monitor_alert_event", AlertEvent.action)(db)
    add_column("monitor_alert_event", AlertEvent.outcome)(db)


register(
    "alerts",
    [
        (1, "alert rules, states, history and webhook attempts", create_tables(TABLES)),
        (2, "alert actions: monitor_alert_rule.action, monitor_alert_event.action and outcome", _actions),
    ],
)
