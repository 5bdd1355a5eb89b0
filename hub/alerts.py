"""Alerts: rules per model (vocab/alerts.py's grammar), evaluated for every serving version of the
model every AIDHUB_ALERT_EVERY (default 30 s), each state change stored and, when it fires or
resolves, POSTed to the rule's webhook (hub/webhooks.py) off the evaluating thread.

A canary rule (`canary_error_rate > base + 2%`) is evaluated for each canary of a split alias against
the alias's base; with `action: rollback` its firing sends every call of the alias back to the base
(`roll_back_canary`, hub/aliases.py), said in the change's `outcome` and in the webhook's body.

A mixin of the Hub: it uses the hub's config, catalog and metrics, and adds `alerts`, `add_alert`,
`remove_alert` and `evaluate_alerts`.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timedelta

import monitor.alertmigrations  # noqa: F401 - registers the alerts' schema steps
from hub import alertviews
from hub.errors import BadInput, HubError, NotFound
from hub.periodic import Periodic
from hub.webhooks import Delivery, Outcome, Webhooks
from monitor import alerts as alertstore
from monitor import driftruns, scorecard
from registry.models import AliasRow, DeploymentRow, ModelRow, VersionRow
from vocab.alerts import (
    ROLLBACK,
    AlertState,
    ConditionInvalid,
    DeliveryState,
    RuleSpec,
    is_canary,
    parse_rule,
)
from vocab.states import DeploymentStatus
from vocab.times import minute_of, utc_naive, utcnow

log = logging.getLogger(__name__)
FIELDS = ("when", "for", "window", "webhook", "secret", "action")
SECRET_MAX = 200


class AlertSchedule(Periodic):
    """Evaluates every rule every `interval` seconds on a thread of its own."""

    name = "alert-schedule"
    failure = "Evaluating the alert rules failed"

    def __init__(self, evaluate: Callable[[], object], every: float):
        super().__init__()
        self.evaluate = evaluate
        self.interval = every

    def run_once(self) -> object:
        return self.evaluate()


def alert_fields(body: dict) -> dict:
    """The JSON body of POST .../alerts as `add_alert`'s keyword arguments; 422 naming a bad field."""
    unknown = sorted(set(body) - set(FIELDS))
    if unknown:
        raise BadInput(f"Unknown alert field(s) {', '.join(unknown)}; use {', '.join(FIELDS)}.")
    for key in FIELDS:
        if body.get(key) is not None and not isinstance(body[key], str):
            raise BadInput(f'"{key}" must be text such as "10m" or "accuracy_low < 0.8", not {body[key]!r}.')
    return {("for_" if key == "for" else key): body.get(key) for key in FIELDS}


@dataclass(frozen=True)
class Canary:
    """A canary of a split alias: `version` gets a share of the calls through `alias`, `base` the most."""

    alias: str
    base: VersionRow
    version: VersionRow


def rule_spec(when, for_=None, window=None, webhook=None, action=None) -> RuleSpec:
    try:
        return parse_rule(when, for_, window, webhook, action)
    except ConditionInvalid as e:
        raise BadInput(e.message) from e


class AlertUseCases:
    """The Hub's alert use cases (a mixin)."""

    def _open_alerts(self) -> None:
        c = self.config
        self.webhooks = Webhooks(_record_attempt, alertstore.finish_delivery, c.webhook_attempts,
                                 c.webhook_backoff_seconds, c.webhook_timeout_seconds)  # fmt: skip
        self.alert_schedule = AlertSchedule(self.evaluate_alerts, c.alert_every_seconds)
        self.metrics.watch_alerts(_firing_counts)

    def _start_alerts(self) -> None:
        self.webhooks.start()
        self._resend_pending()
        if self.config.alert_every_seconds > 0:
            self.alert_schedule.start()

    def _close_alerts(self) -> None:
        self.alert_schedule.stop()
        self.webhooks.stop()

    def alerts(self, name: str) -> dict:
        """The model's rules, each with its state per serving version, and its latest state changes."""
        model = self.catalog.model(name)
        rows = alertstore.rules(model.name)
        states = alertstore.statuses([r.id for r in rows])
        history = alertstore.events(model.name)
        tried = alertstore.attempts([e.id for e in history])
        hub_secret = bool(self.config.webhook_secret)
        rules = [alertviews.rule(r, states[r.id], hub_secret) for r in rows]
        firing = sum(1 for r in rules for v in r["versions"] if v["state"] == "firing")
        return {"model": model.name, "firing": firing, "rules": rules,
                "history": [alertviews.event(e, tried[e.id]) for e in history]}  # fmt: skip

    def add_alert(
        self, name: str, when, for_=None, webhook=None, secret=None, window=None, action=None
    ) -> dict:
        """Add a rule to model NAME; 422 naming the part of it that is wrong."""
        model = self.catalog.model(name)
        spec = rule_spec(when, for_, window, webhook, action)
        if secret is not None and not 0 < len(secret) <= SECRET_MAX:
            raise BadInput(f"The secret must be 1 to {SECRET_MAX} characters long, not {len(secret)}.")
        row = alertstore.add_rule(model.name, spec, secret, "api", utcnow())
        return alertviews.rule(row, [], bool(self.config.webhook_secret))

    def remove_alert(self, name: str, rule_id: int) -> None:
        model = self.catalog.model(name)
        if alertstore.rule(model.name, rule_id) is None:
            ids = ", ".join(str(r.id) for r in alertstore.rules(model.name)) or "none"
            raise NotFound(f"Model {name!r} has no alert rule {rule_id}. Its rules: {ids}.")
        alertstore.remove_rule(rule_id)

    def evaluate_alerts(self, now: datetime | None = None) -> list[dict]:
        """Evaluate every rule for every serving version of its model at `now`; the state changes."""
        now = utc_naive(now) if now else utcnow()
        serving, canaries = _serving(), _canaries()
        rules = {r.id: r for r in alertstore.rules()}
        cards: dict = {}
        changes, judged = [], {}
        for r in rules.values():
            if is_canary(r.metric):
                found = canaries.get(r.model, [])
                changes += [c for canary in found if (c := self._judge_canary(r, canary, now, cards))]
                judged[r.id] = {canary.version.id for canary in found}
            else:
                versions = serving.get(r.model, [])
                changes += [c for v in versions if (c := _judge(r, v, now, cards))]
                judged[r.id] = {v.id for v in versions}
        changes += alertstore.retire(judged, now)
        for change in changes:
            self._deliver(change, rules.get(change.rule_id))
        return [alertviews.event(change, []) for change in changes]

    def _judge_canary(self, rule, canary: Canary, now: datetime, cards: dict):
        """Advance a canary rule for one canary; roll its alias back when the rule starts firing."""
        values = alertstore.canary_values(
            rule.metric, _card(canary.version.id, rule, now, cards), _card(canary.base.id, rule, now, cards)
        )
        value, threshold = (values[0], values[1] + rule.threshold) if values else (None, None)
        change = alertstore.advance(rule, canary.version.id, canary.version.version, value, now, threshold)
        if change and change.state == AlertState.FIRING and rule.action == ROLLBACK:
            self._roll_back(change, rule, canary)
        return change

    def _roll_back(self, change, rule, canary: Canary) -> None:
        """The rule's `rollback`: every call of the canary's alias to its base, said in the change."""
        alias, number = canary.alias, canary.version.version
        try:
            done = self.roll_back_canary(rule.model, alias, number, by=f"alert rule #{rule.id}")
            outcome = f"rolled {alias} back to {done['version']} (was {done['was']})"
        except HubError as e:
            outcome = f"did not roll {alias} back: {e.message}"
        log.warning("alert rule %d of %s fired for %s: %s", rule.id, rule.model, number, outcome)
        alertstore.record_action(change, ROLLBACK, outcome)

    def _deliver(self, event, rule, number: int = 1) -> None:
        if event.delivery != DeliveryState.PENDING or rule is None or not rule.webhook:
            return
        body = json.dumps(alertviews.payload(event, rule, self._public_url())).encode()
        secret = rule.secret or self.config.webhook_secret or None
        self.webhooks.send(Delivery(event.id, rule.webhook, body, secret, number))

    def _public_url(self) -> str:
        c = self.config
        return (c.public_url or f"http://{c.host}:{c.port}").rstrip("/")

    def _resend_pending(self) -> None:
        """Deliveries a stopped hub left unfinished go out again (numbered on from their attempts)."""
        for event in alertstore.pending_events():
            rule = alertstore.rule(event.model, event.rule_id)
            if rule is None or not rule.webhook:
                alertstore.finish_delivery(event.id, False)
                continue
            self._deliver(event, rule, alertstore.attempts_made(event.id) + 1)

    def _alerts_from_package(self, version: VersionRow, created: bool) -> None:
        """A newly published version whose `aid.yaml` has `alerts:` sets the model's package rules."""
        declared = version.manifest.get("alerts")
        if created and declared is not None:
            specs = [rule_spec(e["when"], e.get("for"), e.get("window"), e.get("webhook"), e.get("action"))
                     for e in declared]  # fmt: skip
            alertstore.sync_package_rules(version.model.name, specs, utcnow())

    def _alerts_firing(self, model: str) -> int:
        """How many of the model's rules fire (one firing for two versions counts twice)."""
        return alertstore.firing_of(model)


def _serving() -> dict[str, list[VersionRow]]:
    """The serving (ready) versions of every model, by model name."""
    ready = DeploymentRow.status == DeploymentStatus.READY
    query = VersionRow.select(VersionRow, ModelRow).join(DeploymentRow).switch(VersionRow).join(ModelRow)
    found: dict[str, list[VersionRow]] = {}
    for version in query.where(ready).order_by(VersionRow.id):
        found.setdefault(version.model.name, []).append(version)
    return found


def _canaries() -> dict[str, list[Canary]]:
    """The canaries of every split alias, by model name; a version that is the canary of two aliases is
    judged once, against the first alias's base (by alias name)."""
    query = AliasRow.select(AliasRow, ModelRow).join(ModelRow).where(AliasRow.weights.is_null(False))
    found: dict[str, list[Canary]] = {}
    for row in query.order_by(ModelRow.name, AliasRow.name):
        numbers = [number for number, _ in row.weights if number != row.version.version]
        for version in VersionRow.select().where(
            VersionRow.model == row.model, VersionRow.version.in_(numbers)
        ):
            known = found.setdefault(row.model.name, [])
            if all(c.version.id != version.id for c in known):
                known.append(Canary(row.name, row.version, version))
    return found


def _judge(rule, version: VersionRow, now: datetime, cards: dict):
    return alertstore.advance(rule, version.id, version.version, _value(rule, version.id, now, cards), now)


def _value(rule, version_id: int, now: datetime, cards: dict) -> float | None:
    """The rule's metric for a version: over the window up to `now`, or of the latest drift run."""
    if rule.metric == "drift_share":
        run = driftruns.latest_run(version_id, done_only=True)
        return run.share if run else None
    return alertstore.metric_value(rule.metric, _card(version_id, rule, now, cards))


def _card(version_id: int, rule, now: datetime, cards: dict) -> dict:
    """The version's scorecard over the rule's window up to `now`, read once per evaluation."""
    key = (version_id, rule.window_seconds)
    if key not in cards:
        since = now - timedelta(seconds=rule.window_seconds)
        until = minute_of(now) + timedelta(minutes=1)  # the minute `now` is in counts
        cards[key] = scorecard.scorecard(version_id, since=since, until=until)
    return cards[key]


def _record_attempt(delivery: Delivery, outcome: Outcome) -> None:
    alertstore.record_attempt(delivery.event_id, delivery.number, utcnow(), outcome.status_code,
                              outcome.error, outcome.duration_ms)  # fmt: skip


def _firing_counts() -> list[tuple[str, str, int]]:
    """For /metrics; [] when the database is away (a scrape must answer even then)."""
    try:
        return alertstore.firing_counts()
    except Exception:
        log.exception("Reading the alert states for /metrics failed")
        return []
