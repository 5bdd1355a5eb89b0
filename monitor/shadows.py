"""Shadow versions: which version of a model gets a copy of its live calls, and how the two compare.

A model has at most one shadow (`monitor_shadow`): a version and the share of the serving version's
calls it is sent. Its answers are logged as predictions of the shadow version with source 'shadow',
under the id of the live call they copy plus SHADOW_SUFFIX, so a pair joins on the primary key with
no column of its own, and without the inputs (the live call's row has them). They are not added to
the rollups (monitor/predlog.py), to drift runs (no inputs) or to dataset snapshots: the shadow
version's scorecard, leaderboard rank, alerts and Prometheus counters stay the traffic it really
served; the pairs are read here, from the log, for the comparison.
"""

from __future__ import annotations

import json
import statistics
from dataclasses import dataclass
from datetime import datetime

from peewee import AutoField, DateTimeField, FloatField, IntegerField, TextField

from database.connection import BaseModel
from monitor.feedback import predicted_label
from monitor.tables import Feedback, Prediction
from vocab.times import utcnow

SHADOW_SUFFIX = ".shadow"
MAX_PAIRS = 10_000  # the newest pairs a comparison reads


class ShadowRow(BaseModel):
    id = AutoField()
    model = TextField(unique=True)
    version_id = IntegerField()
    share = FloatField()  # (0, 1]: the share of the serving version's calls copied to it
    created_at = DateTimeField(default=utcnow)

    class Meta:
        table_name = "monitor_shadow"


def shadow_id(live_id: str) -> str:
    return live_id + SHADOW_SUFFIX


def set_shadow(model: str, version_id: int, share: float) -> ShadowRow:
    """Make `version_id` the model's shadow (replacing any other)."""
    ShadowRow.delete().where(ShadowRow.model == model).execute()
    return ShadowRow.create(model=model, version_id=version_id, share=share)


def clear_shadow(model: str) -> bool:
    """Stop shadowing; False when the model had no shadow."""
    return ShadowRow.delete().where(ShadowRow.model == model).execute() > 0


def shadow_of(model: str) -> ShadowRow | None:
    return ShadowRow.get_or_none(ShadowRow.model == model)


@dataclass(frozen=True)
class Pair:
    """One live call and its shadow: `first` is the call of the version asked about first."""

    first: Prediction
    second: Prediction


def pairs(first_id: int, second_id: int, since: datetime | None) -> list[Pair]:
    """The newest calls (up to MAX_PAIRS) one of the two versions answered live and the other in
    shadow, both ways round."""
    found = []
    for live_id, shadow_of_id in ((first_id, second_id), (second_id, first_id)):
        for live, shadow in _pairs(live_id, shadow_of_id, since):
            found.append(Pair(live, shadow) if live_id == first_id else Pair(shadow, live))
    return found


def _pairs(live_version: int, shadow_version: int, since: datetime | None) -> list[tuple]:
    query = Prediction.select().where(Prediction.version_id == shadow_version, Prediction.source == "shadow")
    if since is not None:
        query = query.where(Prediction.created_at >= since)
    shadows = list(query.order_by(Prediction.created_at.desc()).limit(MAX_PAIRS))
    ids = [s.id.removesuffix(SHADOW_SUFFIX) for s in shadows]
    lives = {}
    for start in range(0, len(ids), 500):  # under every database's bind-variable limit
        chunk = ids[start : start + 500]
        query = Prediction.select().where(Prediction.id.in_(chunk), Prediction.version_id == live_version)
        lives.update({p.id: p for p in query})
    return [(lives[i], s) for i, s in zip(ids, shadows, strict=True) if i in lives]


def feedback_on(prediction_ids: list[str]) -> dict[str, Feedback]:
    """The latest feedback on each of these (live) predictions."""
    found: dict[str, Feedback] = {}
    for start in range(0, len(prediction_ids), 500):
        chunk = prediction_ids[start : start + 500]
        query = Feedback.select().where(Feedback.prediction_id.in_(chunk)).order_by(Feedback.id)
        found.update({f.prediction_id: f for f in query})
    return found


def comparison(found: list[Pair], feedback: dict[str, Feedback], labels=((), ())) -> dict:
    """Agreement on labels, mean absolute difference of numbers, latency and errors of both sides,
    and accuracy on the pairs whose live call got feedback. Only pairs both sides answered are
    compared for agreement and difference. `labels`: each side's model labels (class names)."""
    both = [p for p in found if p.first.status == "ok" and p.second.status == "ok"]
    agree, differences = _agreement(both)
    return {
        "pairs": len(found),
        "agreement": _ratio(sum(agree), len(agree)),
        "compared_labels": len(agree),
        "mean_abs_diff": statistics.fmean(differences) if differences else None,
        "compared_numbers": len(differences),
        "sides": [_side(found, feedback, labels[index], index) for index in (0, 1)],
    }


def _agreement(both: list[Pair]) -> tuple[list[bool], list[float]]:
    """Per pair with labels (text, whole numbers, booleans), whether all of them are equal; and the
    absolute difference of every pair of numbers in the same place of both answers."""
    agree, differences = [], []
    for pair in both:
        first, second = _leaves(pair.first.outputs), _leaves(pair.second.outputs)
        first_labels = {k: v for k, v in first.items() if not isinstance(v, float)}
        second_labels = {k: v for k, v in second.items() if not isinstance(v, float)}
        if first_labels or second_labels:
            agree.append(first_labels == second_labels)
        for key, value in first.items():
            other = second.get(key)
            if isinstance(value, float) and isinstance(other, int | float) and not isinstance(other, bool):
                differences.append(abs(value - other))
    return agree, differences


def _leaves(outputs: str | None) -> dict[str, object]:
    """Every value of a logged answer by its place ('y.0.1'): numbers as floats, except whole numbers
    written without a point (labels, class indexes), which stay ints."""
    try:
        value = json.loads(outputs) if outputs else None
    except ValueError:
        return {}
    leaves: dict[str, object] = {}
    stack = [("", value)]
    while stack:
        place, item = stack.pop()
        if isinstance(item, dict):
            stack += [(f"{place}.{k}" if place else str(k), v) for k, v in item.items()]
        elif isinstance(item, list):
            stack += [(f"{place}.{i}", v) for i, v in enumerate(item)]
        elif item is not None:
            leaves[place] = item
    return leaves


def _side(found: list[Pair], feedback: dict[str, Feedback], labels: tuple[str, ...], index: int) -> dict:
    calls = [p.second if index else p.first for p in found]
    latencies = [c.latency_ms for c in calls if c.status == "ok"]
    judged = [_correct(p, index, feedback.get(live_of(p).id), labels) for p in found]
    judged = [j for j in judged if j is not None]
    return {
        "calls": len(calls),
        "shadow": sum(c.source == "shadow" for c in calls),
        "errors": sum(c.status == "error" for c in calls),
        "latency_ms": {
            "p50": statistics.median(latencies) if latencies else None,
            "mean": statistics.fmean(latencies) if latencies else None,
        },
        "feedback": len(judged),
        "accuracy": _ratio(sum(judged), len(judged)),
    }


def live_of(pair: Pair) -> Prediction:
    return pair.second if pair.first.source == "shadow" else pair.first


def _correct(pair: Pair, index: int, given: Feedback | None, labels: tuple[str, ...]) -> bool | None:
    """Whether side `index` answered the pair right, by the feedback on the live call: its label when
    it has one; else `correct`, which holds for the shadow too when both gave the same answer."""
    if given is None:
        return None
    call = pair.second if index else pair.first
    if call.status != "ok":
        return False if given.label or given.correct is not None else None
    if given.label:
        predicted = predicted_label(call, labels)
        return None if predicted is None else predicted == given.label
    if given.correct is None:
        return None
    if call is live_of(pair) or call.outputs == live_of(pair).outputs:
        return given.correct
    return None


def _ratio(part: int, whole: int) -> float | None:
    return part / whole if whole else None
