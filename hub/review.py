"""The review queue's use cases (roles: `ReviewUseCases`, a mixin of hub.hub.Hub: it uses its
catalog, config, metrics and background flag). The selection pass is hub/reviewselect.py; the items
are monitor/reviews.py. A reviewer's label becomes feedback on the prediction, given as the reviewer
(one per prediction per reviewer, as all feedback), with `correct` against the model's answer."""

from __future__ import annotations

import json
from dataclasses import replace
from datetime import timedelta

from hub.errors import BadInput, Conflict, Invalid, NotFound, translated
from hub.reviewselect import ReviewSelection, Selector
from monitor import feedback as feedback_store
from monitor import reviews
from monitor import reviewscore as score
from monitor.reviews import ReviewItem, ReviewState
from monitor.reviewscore import DEFAULT_THRESHOLDS
from monitor.tables import Prediction
from registry.models import VersionRow
from vocab.times import isoformat

MOST = 500  # items one listing returns at most
RULE_FIELDS = ("measure", "threshold", "per_minute", "max_waiting")


class ReviewUseCases:
    def _open_review(self) -> None:
        """The selector, and in the background hub its loop (stopped by `close`)."""
        c = self.config
        settle = timedelta(seconds=c.review_settle_seconds)
        self.review_selector = Selector(self.catalog.packages.folder, c.drift_reference_rows, settle=settle)
        self.review_selection = ReviewSelection(self.select_for_review)
        if self.background and c.review_every_seconds > 0:
            self.review_selection.start(c.review_every_seconds)

    def select_for_review(self, now=None) -> dict[str, int]:
        """One selection pass now: the items added, by model."""
        with translated():
            return self.review_selector.run(now)

    def review_queue(self, name: str, limit: int | str = 50) -> dict:
        """The model's waiting items, most doubtful first, with their inputs and answers."""
        model = self.catalog.model(name)
        most = _limit(limit)
        with translated():
            found = reviews.waiting(model.name, most)
            counts = reviews.counts(model.name)
            rules = reviews.rules_of(model.name, self.review_selector.default)
        labels = _labels(self.target(model.name)) if self.catalog.versions(model) else ()
        versions = _versions({item.version_id for item, _ in found})
        items = [_item(item, call, versions.get(item.version_id)) for item, call in found]
        return {"model": model.name, "labels": list(labels), "counts": counts, "rules": rules.__dict__,
                "items": items}  # fmt: skip

    def review_item(self, name: str, item_id: int) -> dict:
        """One item of the model's queue, whatever its state (404 for another model's or none)."""
        found, call = self._review_item(name, item_id)
        return _item(found, call, VersionRow.get_or_none(VersionRow.id == found.version_id))

    def answer_review(self, name: str, item_id: int, body: dict, client: str, reviewer: str) -> dict:
        """{"label": L} labels the item (feedback on its prediction); {"skip": true} skips it."""
        label, skip = _answer_fields(body)
        found, call = self._review_item(name, item_id)
        if skip:
            if found.state != ReviewState.WAITING:
                raise Conflict(
                    f"Review item {item_id} is {found.state} already; only a waiting item is skipped."
                )
            with translated():
                reviews.close(found, ReviewState.SKIPPED, reviewer)
            return {"item": _item(found, call), "feedback": None}
        version = VersionRow.get_or_none(VersionRow.id == found.version_id)
        labels = _labels(version) if version else ()
        if labels and label not in labels:
            raise BadInput(f"label: {label!r} is not one of {name}'s labels: {', '.join(labels)}.")
        correct = None if found.answer is None else found.answer == label
        with translated():
            row = feedback_store.record_feedback(
                found.prediction_id, found.version_id, found.model, correct=correct, label=label,
                client=client, labels=labels,
            )  # fmt: skip
            reviews.close(found, ReviewState.LABELLED, reviewer, label)
        self.metrics.observe_feedback(found.model, found.version, correct)
        return {"item": _item(found, call), "feedback": {"id": row.id, "label": label, "correct": correct}}

    def set_review_rules(self, name: str, fields: dict) -> dict:
        """Change how the model's items are chosen; the fields not given keep their value."""
        model = self.catalog.model(name)
        if not isinstance(fields, dict) or not fields or set(fields) - set(RULE_FIELDS):
            unknown = sorted(set(fields) - set(RULE_FIELDS)) if isinstance(fields, dict) else []
            raise Invalid(
                f"Give any of {', '.join(RULE_FIELDS)}; unknown: {', '.join(unknown) or 'none given'}."
            )
        with translated():
            rules = reviews.rules_of(model.name, self.review_selector.default)
            if "measure" in fields and "threshold" not in fields:
                fields = {**fields, "threshold": DEFAULT_THRESHOLDS.get(fields["measure"], rules.threshold)}
            reviews.set_rules(model.name, replace(rules, **fields).checked())
        return self.review_queue(name, 0)

    def _review_item(self, name: str, item_id: int) -> tuple[ReviewItem, Prediction | None]:
        self.catalog.model(name)
        with translated():
            found = reviews.item(name, item_id)
        if found is None:
            raise NotFound(
                f"{name} has no review item {item_id}. 'aid review {name}' lists the waiting ones."
            )
        return found


def _answer_fields(body) -> tuple[str | None, bool]:
    if (
        not isinstance(body, dict)
        or set(body) - {"label", "skip"}
        or ("label" in body) == bool(body.get("skip"))
    ):
        raise Invalid('Send {"label": "<one of the model\'s labels>"} or {"skip": true}.')
    if body.get("skip"):
        return None, True
    label = body.get("label")
    if not isinstance(label, str) or not label.strip():
        raise Invalid(f"label {label!r} is not a label; send one of the model's labels as text.")
    return label, False


def _limit(limit) -> int:
    try:
        value = int(limit)
    except (TypeError, ValueError):
        value = -1
    if not 0 <= value <= MOST:
        raise Invalid(f"limit {limit!r} is not a number from 0 to {MOST}.")
    return value


def _versions(ids: set[int]) -> dict[int, VersionRow]:
    return {v.id: v for v in VersionRow.select().where(VersionRow.id.in_(sorted(ids)))} if ids else {}


def _labels(version: VersionRow) -> tuple[str, ...]:
    return tuple(version.manifest.get("labels") or ())


def _item(item: ReviewItem, call: Prediction | None, version: VersionRow | None = None) -> dict:
    return {
        "id": item.id, "prediction_id": item.prediction_id, "version": item.version, "reason": item.reason,
        "score": item.score, "detail": item.detail, "answer": item.answer, "state": item.state,
        "label": item.label, "reviewer": item.reviewer, "predicted_at": isoformat(item.predicted_at),
        "created_at": isoformat(item.created_at), "reviewed_at": isoformat(item.reviewed_at),
        "inputs": _payload(call and call.inputs), "outputs": _payload(call and call.outputs),
        "top": _top(_payload(call and call.outputs), version),
    }  # fmt: skip


def _top(outputs, version: VersionRow | None, most: int = 3) -> list[dict]:
    """The answer's most probable labels with their probabilities (none without a probability output)."""
    labels = _labels(version) if version else ()
    probs = (
        score.probabilities(outputs, score.probability_output(version.outputs or {}, labels))
        if labels
        else None
    )
    if not probs or len(probs) != len(labels):
        return []
    ranked = sorted(zip(labels, probs, strict=True), key=lambda pair: -pair[1])[:most]
    return [{"label": label, "probability": round(p, 4)} for label, p in ranked]


def _payload(text: str | None):
    try:
        return json.loads(text) if text else None
    except ValueError:
        return None
