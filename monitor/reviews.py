"""The review queue: logged predictions worth a human look, each waiting until a reviewer labels or
skips it. Chosen by the hub's selection pass (hub/review.py) from the calls logged since its cursor;
the doubt of one answer is monitor/reviewscore.py. A label becomes feedback on the prediction
(monitor/feedback.py), so the queue needs no counts of its own.

`monitor_review_item` holds each prediction at most once (a unique prediction id): an item is never
chosen twice, whatever its state. `monitor_review_setting` holds a model's rules when they differ
from the defaults, and `monitor_review_cursor` the id of the last logged call the pass has judged.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from enum import StrEnum

from peewee import AutoField, DateTimeField, FloatField, IntegerField, TextField, fn

from database.connection import BaseModel
from monitor.errors import MonitorError
from monitor.predlog import CROCKFORD
from monitor.reviewscore import DEFAULT_THRESHOLDS, MEASURES
from monitor.shadows import SHADOW_SUFFIX
from monitor.tables import Prediction
from vocab.times import minute_of, utc_naive, utcnow

CURSOR = "selection"
CHUNK = 500  # ids per IN (...): under every database's bind-variable limit


class ReviewState(StrEnum):
    WAITING = "waiting"
    LABELLED = "labelled"
    SKIPPED = "skipped"


class ReviewReason(StrEnum):
    """Why an item was chosen; the first that holds wins, in this order."""

    DISAGREEMENT = "disagreement"  # the shadow version answered another label
    DRIFT = "drift"  # a value of a drifted column outside the reference's range
    LOW_CONFIDENCE = "low_confidence"  # the model's own probabilities


class ReviewItem(BaseModel):
    id = AutoField()
    prediction_id = TextField(unique=True)
    model = TextField()
    version_id = IntegerField()
    version = TextField()
    reason = TextField()  # ReviewReason
    score = FloatField()  # 0..1: how doubtful; higher is shown first
    detail = TextField(default="")  # the reasons in words
    answer = TextField(null=True)  # the label the model answered
    predicted_at = DateTimeField()  # the call's time (the per-minute cap counts by it)
    created_at = DateTimeField(default=utcnow)
    state = TextField(default=ReviewState.WAITING)
    label = TextField(null=True)
    reviewer = TextField(null=True)
    reviewed_at = DateTimeField(null=True)

    class Meta:
        table_name = "monitor_review_item"
        indexes = ((("model", "state", "score"), False), (("version_id", "predicted_at"), False))


class ReviewSetting(BaseModel):
    model = TextField(primary_key=True)
    measure = TextField()
    threshold = FloatField()
    per_minute = IntegerField()
    max_waiting = IntegerField()

    class Meta:
        table_name = "monitor_review_setting"


class ReviewCursor(BaseModel):
    name = TextField(primary_key=True)
    last_id = TextField()

    class Meta:
        table_name = "monitor_review_cursor"


TABLES = (ReviewItem, ReviewSetting, ReviewCursor)


class RulesInvalid(MonitorError):
    """A review rule out of range; the message names it and the fix."""


@dataclass(frozen=True)
class Rules:
    """How a model's items are chosen: the confidence measure and its threshold, at most `per_minute`
    items per version per minute of calls, and no new ones while `max_waiting` wait."""

    measure: str = "margin"
    threshold: float = DEFAULT_THRESHOLDS["margin"]
    per_minute: int = 5
    max_waiting: int = 500

    def checked(self) -> Rules:
        if self.measure not in MEASURES:
            raise RulesInvalid(f"measure {self.measure!r} is not one of {', '.join(MEASURES)}.")
        if isinstance(self.threshold, bool) or not 0.0 <= float(self.threshold) <= 1.0:
            raise RulesInvalid(f"threshold {self.threshold!r} is not in [0, 1]; e.g. 0.2 for a margin.")
        for name in ("per_minute", "max_waiting"):
            value = getattr(self, name)
            if type(value) is not int or value < 0:
                raise RulesInvalid(f"{name} {value!r} is not a whole number of 0 or more.")
        return self


@dataclass(frozen=True)
class Candidate:
    prediction: Prediction
    reason: ReviewReason
    score: float
    detail: str
    answer: str | None


def rules_of(model: str, default: Rules) -> Rules:
    row = ReviewSetting.get_or_none(ReviewSetting.model == model)
    if row is None:
        return default
    return Rules(row.measure, row.threshold, row.per_minute, row.max_waiting)


def set_rules(model: str, rules: Rules) -> Rules:
    rules.checked()
    ReviewSetting.delete().where(ReviewSetting.model == model).execute()
    ReviewSetting.create(model=model, **rules.__dict__)
    return rules


def cursor() -> str | None:
    row = ReviewCursor.get_or_none(ReviewCursor.name == CURSOR)
    return row.last_id if row else None


def move_cursor(last_id: str) -> None:
    updated = ReviewCursor.update(last_id=last_id).where(ReviewCursor.name == CURSOR).execute()
    if not updated:
        ReviewCursor.create(name=CURSOR, last_id=last_id)


def id_at(when: datetime) -> str:
    """The smallest prediction id (a ULID, monitor/predlog.py) of that moment: ids sort by time."""
    millis = int(utc_naive(when).replace(tzinfo=UTC).timestamp() * 1000) << 80
    return "".join(CROCKFORD[(millis >> shift) & 31] for shift in range(125, -1, -5))


def new_calls(after: str, until: datetime, limit: int) -> list[Prediction]:
    """Successful live calls logged after id `after` and before `until`, oldest first, without their
    inputs (`inputs_of`): shadow copies, failures and cut payloads are no one's to review. The scan
    walks the primary key from `after`. For 2,000 logged heavy-onnx calls (12 KB of inputs each) the
    query took 28 ms without the inputs, 36 ms with them."""
    fields = [f for f in Prediction._meta.sorted_fields if f is not Prediction.inputs]
    query = Prediction.select(*fields).where(
        Prediction.id > after, Prediction.source != "shadow", Prediction.status == "ok",
        Prediction.created_at < until, Prediction.truncated == False,  # noqa: E712 - SQL
        Prediction.outputs.is_null(False),
    )  # fmt: skip
    return list(query.order_by(Prediction.id).limit(limit))


def inputs_of(ids: list[str]) -> dict[str, str | None]:
    """The logged inputs (JSON text) of these calls, by id."""
    found = {}
    for start in range(0, len(ids), CHUNK):
        query = Prediction.select(Prediction.id, Prediction.inputs).where(
            Prediction.id.in_(ids[start : start + CHUNK])
        )
        found.update(query.tuples())
    return found


def shadows_of(live_ids: list[str]) -> dict[str, Prediction]:
    """The shadow answers (monitor/shadows.py) of these live calls, by the live call's id."""
    found = {}
    for start in range(0, len(live_ids), CHUNK):
        ids = [i + SHADOW_SUFFIX for i in live_ids[start : start + CHUNK]]
        query = Prediction.select().where(Prediction.id.in_(ids), Prediction.status == "ok")
        found.update({p.id.removesuffix(SHADOW_SUFFIX): p for p in query})
    return found


def taken_in_minute(version_id: int, minute: datetime) -> int:
    """Items already chosen from the version's calls of that minute."""
    start = minute_of(minute)
    return (
        ReviewItem.select()
        .where(
            ReviewItem.version_id == version_id,
            ReviewItem.predicted_at >= start,
            ReviewItem.predicted_at < start + timedelta(minutes=1),
        )
        .count()
    )


def waiting_count(model: str) -> int:
    return (
        ReviewItem.select().where(ReviewItem.model == model, ReviewItem.state == ReviewState.WAITING).count()
    )


def queued(prediction_ids: list[str]) -> set[str]:
    """Those of these predictions that were ever queued (in any state)."""
    known: set[str] = set()
    for start in range(0, len(prediction_ids), CHUNK):
        chunk = prediction_ids[start : start + CHUNK]
        query = ReviewItem.select(ReviewItem.prediction_id).where(ReviewItem.prediction_id.in_(chunk))
        known |= {r.prediction_id for r in query}
    return known


def add(candidates: list[Candidate]) -> int:
    """Store the candidates as waiting items, leaving out any prediction queued once already (a
    selection pass of another hub process may have stored it this moment: the insert ignores it)."""
    known = queued([c.prediction.id for c in candidates])
    rows = {c.prediction.id: _row(c) for c in candidates if c.prediction.id not in known}
    batch = list(rows.values())
    for start in range(0, len(batch), 50):
        ReviewItem.insert_many(batch[start : start + 50]).on_conflict_ignore().execute()
    return len(batch)


def _row(c: Candidate) -> dict:
    p = c.prediction
    return {
        "prediction_id": p.id, "model": p.model, "version_id": p.version_id, "version": p.version,
        "reason": c.reason.value, "score": round(c.score, 6), "detail": c.detail[:2000], "answer": c.answer,
        "predicted_at": p.created_at, "created_at": utcnow(), "state": ReviewState.WAITING.value,
    }  # fmt: skip


def waiting(model: str, limit: int) -> list[tuple[ReviewItem, Prediction | None]]:
    """The model's waiting items, most doubtful first, each with its logged call (None if it has been
    deleted since, by retention)."""
    query = (
        ReviewItem.select()
        .where(ReviewItem.model == model, ReviewItem.state == ReviewState.WAITING)
        .order_by(ReviewItem.score.desc(), ReviewItem.id)
        .limit(limit)
    )
    items = list(query)
    calls = {p.id: p for p in Prediction.select().where(Prediction.id.in_([i.prediction_id for i in items]))}
    return [(item, calls.get(item.prediction_id)) for item in items]


def item(model: str, item_id: int) -> tuple[ReviewItem, Prediction | None] | None:
    found = ReviewItem.get_or_none(ReviewItem.id == item_id, ReviewItem.model == model)
    if found is None:
        return None
    return found, Prediction.get_or_none(Prediction.id == found.prediction_id)


def close(found: ReviewItem, state: ReviewState, reviewer: str, label: str | None = None) -> ReviewItem:
    found.state, found.label, found.reviewer, found.reviewed_at = state, label, reviewer, utcnow()
    found.save()
    return found


def counts(model: str) -> dict[str, int]:
    """Items per state."""
    query = ReviewItem.select(ReviewItem.state, fn.COUNT(ReviewItem.id).alias("n"))
    rows = query.where(ReviewItem.model == model).group_by(ReviewItem.state).tuples()
    found = dict(rows)
    return {state.value: int(found.get(state.value, 0)) for state in ReviewState}
