"""Alert rules: when a condition holds (pure), the state machine of a rule for a version (pure), and
the rules, states, history and webhook attempts as stored (monitor.alerttables).

States (vocab.alerts.AlertState): a holding condition makes an ok (or resolved) rule pending, or
firing at once when the rule has no `for`; pending becomes firing once the condition held for `for`;
firing becomes resolved when it stops holding. Resolved is an ok that remembers: it stays shown until
the condition holds again. No data (no judged feedback, no calls, no drift run) is no verdict: a
firing rule keeps firing, a pending one goes back to ok (it must be seen holding for all of `for`).

A canary rule's state is kept for the canary version; its value is the canary's metric and its
threshold the base's plus the rule's margin, both over the window (`canary_values`).
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta

from peewee import Case, SqliteDatabase, fn

from database.connection import database
from monitor.alerttables import AlertAttempt, AlertEvent, AlertRule, AlertStatus
from vocab.alerts import (
    CANARY_MIN_CALLS,
    CANARY_MIN_FEEDBACK,
    SENT,
    AlertState,
    DeliveryState,
    RuleSpec,
)

OPERATORS = {
    "<": lambda a, b: a < b,
    "<=": lambda a, b: a <= b,
    ">": lambda a, b: a > b,
    ">=": lambda a, b: a >= b,
}


@dataclass(frozen=True)
class Step:
    state: AlertState
    since: datetime


def holds(op: str, value: float | None, threshold: float) -> bool | None:
    """Whether `value OP threshold`; None (no verdict) without a value."""
    return None if value is None else OPERATORS[op](value, threshold)


def next_state(
    state: AlertState, since: datetime, verdict: bool | None, now: datetime, for_: timedelta
) -> Step:
    """The state after one evaluation whose condition held (True), did not (False) or had no data (None)."""
    if state == AlertState.FIRING:
        return Step(AlertState.RESOLVED, now) if verdict is False else Step(state, since)
    if state == AlertState.PENDING:
        if not verdict:
            return Step(AlertState.OK, now)
        return Step(AlertState.FIRING, now) if now - since >= for_ else Step(state, since)
    if not verdict:
        return Step(state, since)
    return Step(AlertState.PENDING, now) if for_ > timedelta(0) else Step(AlertState.FIRING, now)


def metric_value(metric: str, card: dict) -> float | None:
    """A metric of a scorecard (monitor.scorecard.scorecard over the rule's window)."""
    feedback, latency = card["feedback"], card["latency_ms"]
    return {
        "accuracy": feedback["accuracy"], "accuracy_low": feedback["accuracy_low"],
        "error_rate": card["error_rate"], "p95_ms": latency["p95"], "requests": card["requests"],
    }[metric]  # fmt: skip


def canary_values(metric: str, canary: dict, base: dict) -> tuple[float, float] | None:
    """(the canary's value, the base's) of a canary metric, from their scorecards over the rule's window;
    None (no verdict) until each has CANARY_MIN_CALLS calls, or CANARY_MIN_FEEDBACK judged feedback for
    accuracy: one early error out of three calls is no reason to roll back."""
    plain = metric.removeprefix("canary_")
    if plain == "accuracy":
        enough = all(c["feedback"]["correct"] + c["feedback"]["incorrect"] >= CANARY_MIN_FEEDBACK
                     for c in (canary, base))  # fmt: skip
    else:
        enough = canary["requests"] >= CANARY_MIN_CALLS and base["requests"] >= CANARY_MIN_CALLS
    values = metric_value(plain, canary), metric_value(plain, base)
    return None if not enough or None in values else (float(values[0]), float(values[1]))


def _writing():
    """A write transaction, IMMEDIATE on SQLite: a read in it never meets a newer write (SQLITE_BUSY)."""
    db = database.obj
    return db.atomic("IMMEDIATE") if isinstance(db, SqliteDatabase) else db.atomic()


# --- rules --------------------------------------------------------------------------------------


def add_rule(model: str, spec: RuleSpec, secret: str | None, source: str, now: datetime) -> AlertRule:
    c = spec.condition
    return AlertRule.create(
        model=model, condition=c.text, metric=c.metric, op=c.op, threshold=c.threshold,
        for_seconds=int(spec.for_.total_seconds()), window_seconds=int(spec.window.total_seconds()),
        webhook=spec.webhook, secret=secret or None, source=source, created_at=now, action=spec.action,
    )  # fmt: skip


def rules(model: str | None = None) -> list[AlertRule]:
    query = AlertRule.select().order_by(AlertRule.id)
    return list(query if model is None else query.where(AlertRule.model == model))


def rule(model: str, rule_id: int) -> AlertRule | None:
    return AlertRule.get_or_none(AlertRule.id == rule_id, AlertRule.model == model)


def remove_rule(rule_id: int) -> None:
    """The rule and its states go; its history stays (each change names its condition)."""
    with _writing():
        AlertStatus.delete().where(AlertStatus.rule_id == rule_id).execute()
        AlertRule.delete().where(AlertRule.id == rule_id).execute()


def sync_package_rules(model: str, specs: list[RuleSpec], now: datetime) -> list[AlertRule]:
    """Make the model's `aid.yaml` rules these: same ones kept (with their states), others replaced."""
    with _writing():
        old = {_key(r): r for r in rules(model) if r.source == "aid.yaml"}
        new = {_spec_key(s): s for s in specs}
        for key in old.keys() - new.keys():
            remove_rule(old[key].id)
        for key, spec in new.items():  # in the package's order
            if key not in old:
                add_rule(model, spec, None, "aid.yaml", now)
    return [r for r in rules(model) if r.source == "aid.yaml"]


def _key(r: AlertRule) -> tuple:
    return r.condition, r.for_seconds, r.window_seconds, r.webhook, r.action


def _spec_key(s: RuleSpec) -> tuple:
    return s.condition.text, int(s.for_.total_seconds()), int(s.window.total_seconds()), s.webhook, s.action


# --- states and history -------------------------------------------------------------------------


def statuses(rule_ids: list[int]) -> dict[int, list[AlertStatus]]:
    found: dict[int, list[AlertStatus]] = {i: [] for i in rule_ids}
    query = AlertStatus.select().where(AlertStatus.rule_id.in_(rule_ids)).order_by(AlertStatus.version)
    for row in query if rule_ids else []:
        found[row.rule_id].append(row)
    return found


def advance(
    r: AlertRule, version_id: int, version: str, value: float | None, now: datetime,
    threshold: float | None = None,
) -> AlertEvent | None:  # fmt: skip
    """Evaluate rule `r` for a version at `now` with the metric's `value` against `threshold` (default
    the rule's; a canary rule's: the base's value plus its margin); the change, if any. One process
    sees each change (a write transaction), so an action taken on it is taken once."""
    value = None if value is None else float(value)
    threshold = r.threshold if threshold is None else threshold
    with _writing():
        status = AlertStatus.get_or_none(AlertStatus.rule_id == r.id, AlertStatus.version_id == version_id)
        if status is None:
            status = AlertStatus(rule_id=r.id, version_id=version_id, version=version, since=now)
        previous = AlertState(status.state)
        step = next_state(previous, status.since, holds(r.op, value, threshold), now,
                          timedelta(seconds=r.for_seconds))  # fmt: skip
        status.state, status.since, status.value, status.checked_at = step.state, step.since, value, now
        status.save()
        if step.state == previous:
            return None
        return _change(r, status, previous, now, threshold)


def _change(
    r: AlertRule, status: AlertStatus, previous: AlertState, now: datetime, threshold: float | None = None
) -> AlertEvent:
    sent = r.webhook and status.state in SENT
    return AlertEvent.create(
        rule_id=r.id, model=r.model, version_id=status.version_id, version=status.version,
        condition=r.condition, previous=previous, state=status.state, value=status.value,
        threshold=r.threshold if threshold is None else threshold, at=now,
        delivery=DeliveryState.PENDING if sent else DeliveryState.NONE,
    )  # fmt: skip


def retire(judged: dict[int, set[int]], now: datetime) -> list[AlertEvent]:
    """Forget the states of versions a rule no longer judges (rule id -> version ids: those that serve,
    for a canary rule the canaries of split aliases); one that was firing is resolved first."""
    changes = []
    with _writing():
        gone = [s for s in AlertStatus.select() if s.version_id not in judged.get(s.rule_id, ())]
        for status in gone:
            r = AlertRule.get_or_none(AlertRule.id == status.rule_id)
            if r is not None and status.state == AlertState.FIRING:
                status.state, status.value = AlertState.RESOLVED, None
                changes.append(_change(r, status, AlertState.FIRING, now))
            status.delete_instance()
    return changes


def events(model: str, limit: int = 50) -> list[AlertEvent]:
    """The model's latest state changes, newest first."""
    query = AlertEvent.select().where(AlertEvent.model == model)
    return list(query.order_by(AlertEvent.at.desc(), AlertEvent.id.desc()).limit(limit))


def pending_events() -> list[AlertEvent]:
    """Changes whose webhook delivery has not ended (a hub stopped while sending them)."""
    return list(
        AlertEvent.select().where(AlertEvent.delivery == DeliveryState.PENDING).order_by(AlertEvent.id)
    )


def event(event_id: int) -> AlertEvent | None:
    return AlertEvent.get_or_none(AlertEvent.id == event_id)


def record_action(change: AlertEvent, action: str, outcome: str) -> None:
    """What the rule's action did on this change (shown in the history and sent with the webhook)."""
    change.action, change.outcome = action, outcome
    AlertEvent.update(action=action, outcome=outcome).where(AlertEvent.id == change.id).execute()


# --- webhook attempts ---------------------------------------------------------------------------


def record_attempt(event_id: int, number: int, at: datetime, status_code: int | None, error: str | None,
                   duration_ms: float) -> None:  # fmt: skip
    AlertAttempt.create(event_id=event_id, number=number, at=at, status_code=status_code, error=error,
                        duration_ms=round(duration_ms, 1))  # fmt: skip


def finish_delivery(event_id: int, delivered: bool) -> None:
    state = DeliveryState.DELIVERED if delivered else DeliveryState.FAILED
    AlertEvent.update(delivery=state).where(AlertEvent.id == event_id).execute()


def attempts(event_ids: list[int]) -> dict[int, list[AlertAttempt]]:
    found: dict[int, list[AlertAttempt]] = {i: [] for i in event_ids}
    query = AlertAttempt.select().where(AlertAttempt.event_id.in_(event_ids)).order_by(AlertAttempt.id)
    for row in query if event_ids else []:
        found[row.event_id].append(row)
    return found


def attempts_made(event_id: int) -> int:
    return AlertAttempt.select().where(AlertAttempt.event_id == event_id).count()


# --- counts -------------------------------------------------------------------------------------


def firing_counts() -> list[tuple[str, str, int]]:
    """(model, version, rules firing) for every version that has a rule's state, 0 included."""
    firing = fn.SUM(Case(None, [(AlertStatus.state == AlertState.FIRING, 1)], 0))
    query = (
        AlertStatus.select(AlertRule.model, AlertStatus.version, firing.alias("firing"))
        .join(AlertRule, on=AlertStatus.rule_id == AlertRule.id)
        .group_by(AlertRule.model, AlertStatus.version)
        .order_by(AlertRule.model, AlertStatus.version)
    )
    return [(model, version, int(count or 0)) for model, version, count in query.tuples()]


def firing_of(model: str) -> int:
    """The model's rules firing (a rule firing for two versions counts twice)."""
    query = AlertStatus.select().join(AlertRule, on=AlertStatus.rule_id == AlertRule.id)
    return query.where(AlertRule.model == model, AlertStatus.state == AlertState.FIRING).count()
