"""Peewee tables of the alerts, on the hub's one database: rules per model, each rule's state per
serving version, every state change (the history) and every webhook attempt. Times are naive UTC."""

from __future__ import annotations

from peewee import AutoField, DateTimeField, FloatField, IntegerField, TextField

from database.connection import BaseModel
from vocab.alerts import AlertState, DeliveryState


class AlertRule(BaseModel):
    id = AutoField()
    model = TextField(index=True)  # the model's name: rules belong to a model, not to a version
    condition = TextField()  # as the hub writes it: 'accuracy_low < 0.8', 'no traffic for 10m'
    metric = TextField()  # vocab.alerts.METRICS
    op = TextField()  # vocab.alerts.OPS
    threshold = FloatField()
    for_seconds = IntegerField(default=0)
    window_seconds = IntegerField()
    webhook = TextField(null=True)
    secret = TextField(null=True)  # signs the webhook's body; never shown
    source = TextField(default="api")  # 'api' (aid alert add, the API) | 'aid.yaml' (the package)
    created_at = DateTimeField()
    action = TextField(null=True)  # vocab.alerts.ACTIONS: done when the rule fires; None: the webhook only

    class Meta:
        table_name = "monitor_alert_rule"


class AlertStatus(BaseModel):
    """The state of one rule for one serving version, as of the last evaluation."""

    id = AutoField()
    rule_id = IntegerField()
    version_id = IntegerField()
    version = TextField()
    state = TextField(default=AlertState.OK)  # vocab.alerts.AlertState
    since = DateTimeField()  # when it entered this state
    value = FloatField(null=True)  # the metric at the last evaluation; None: no data
    checked_at = DateTimeField()

    class Meta:
        table_name = "monitor_alert_status"
        indexes = ((("rule_id", "version_id"), True),)


class AlertEvent(BaseModel):
    """One state change of a rule for a version: the history, and what a webhook is sent."""

    id = AutoField()
    rule_id = IntegerField(index=True)
    model = TextField()
    version_id = IntegerField()
    version = TextField()
    condition = TextField()  # kept: the history outlives a removed rule
    previous = TextField()
    state = TextField()
    value = FloatField(null=True)
    threshold = FloatField()
    at = DateTimeField()
    delivery = TextField(default=DeliveryState.NONE)  # vocab.alerts.DeliveryState
    action = TextField(null=True)  # the rule's action, taken on this change (to firing)
    outcome = TextField(null=True)  # what it did: 'rolled production back to 1.0.0 (was ...)', or why not

    class Meta:
        table_name = "monitor_alert_event"
        indexes = ((("model", "at"), False), (("delivery",), False))


class AlertAttempt(BaseModel):
    """One POST of an event to its webhook."""

    id = AutoField()
    event_id = IntegerField(index=True)
    number = IntegerField()  # 1, 2, ...
    at = DateTimeField()
    status_code = IntegerField(null=True)  # None: no HTTP answer (refused, timed out)
    error = TextField(null=True)
    duration_ms = FloatField()

    class Meta:
        table_name = "monitor_alert_attempt"


TABLES = (AlertRule, AlertStatus, AlertEvent, AlertAttempt)
