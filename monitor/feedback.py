"""User feedback on predictions (or on a model generally), counted into the rollups."""

from __future__ import annotations

import json
from datetime import UTC, datetime

from database.connection import database
from monitor.errors import MonitorError
from monitor.rollups import Aggregate
from monitor.tables import Feedback, Prediction
from vocab.times import utc_naive

COMMENT_CAP = 2000
LABEL_CAP = 200


class FeedbackInvalid(MonitorError):
    """A feedback value out of range; the message names the field and the fix."""

    def __init__(self, field: str, message: str):
        super().__init__(f"{field}: {message}")
        self.field = field
        self.message = f"{field}: {message}"


class LabelUnknown(MonitorError):
    """A label that is not one of the model's labels."""

    def __init__(self, label: str, labels: tuple[str, ...]):
        super().__init__(f"label: {label!r} is not one of the model's labels: {', '.join(labels)}.")


class PredictionNotFound(MonitorError):
    def __init__(self, prediction_id: str):
        super().__init__(f"No prediction '{prediction_id}' is logged. Check the id (X-Prediction-Id).")
        self.prediction_id = prediction_id


def validate(correct: object, label: object, rating: object, comment: object) -> None:
    """Raise FeedbackInvalid for the first value that does not fit."""
    if correct is not None and not isinstance(correct, bool):
        raise FeedbackInvalid("correct", f"must be true or false, not {correct!r}.")
    if rating is not None and (type(rating) is not int or not 1 <= rating <= 5):
        raise FeedbackInvalid("rating", f"must be a whole number from 1 to 5, not {rating!r}.")
    _check_text("label", label, LABEL_CAP)
    _check_text("comment", comment, COMMENT_CAP)
    if correct is None and rating is None and not label and not comment:
        raise FeedbackInvalid("feedback", "give at least one of correct, label, rating, comment.")


def _check_text(name: str, value: object, cap: int) -> None:
    if value is None:
        return
    if not isinstance(value, str):
        raise FeedbackInvalid(name, f"must be text, not {type(value).__name__}.")
    if len(value) > cap:
        raise FeedbackInvalid(name, f"is {len(value)} characters long; shorten it to {cap}.")


def find_prediction(prediction_id: str) -> Prediction | None:
    """The logged prediction with this id, or None (a very recent one may still be queued)."""
    return Prediction.get_or_none(Prediction.id == prediction_id)


def predicted_label(prediction: Prediction | None, labels: tuple[str, ...] = ()) -> str | None:
    """The one label a prediction answered, if it did: its single text output, or, for a model with
    labels, the label its `label` output (else its single output) points at. None otherwise."""
    try:
        outputs = json.loads(prediction.outputs) if prediction and prediction.outputs else None
    except ValueError:
        return None
    if not isinstance(outputs, dict) or not outputs:
        return None
    value = outputs.get("label", next(iter(outputs.values())) if len(outputs) == 1 else None)
    if isinstance(value, list) and len(value) == 1:
        value = value[0]
    if isinstance(value, int) and not isinstance(value, bool) and 0 <= value < len(labels):
        return labels[value]
    return value if isinstance(value, str) else None


def record_feedback(
    prediction_id: str | None,
    version_id: int | None,
    model: str,
    correct: bool | None = None,
    label: str | None = None,
    rating: int | None = None,
    comment: str | None = None,
    now: datetime | float | None = None,
    client: str = "",
    labels: tuple[str, ...] = (),
) -> Feedback:
    """Validate, store the feedback and update the (version, minute) rollup in one transaction.

    With a prediction id and no version id, the version comes from the logged prediction
    (PredictionNotFound if it is not logged). A label must be one of `labels` when the model has
    them (LabelUnknown); without `correct`, it is compared with what the model answered. One client
    gives one feedback per prediction: a repeat replaces the earlier one, in the rollups too. Only
    feedback on a prediction counts toward accuracy; feedback on a model generally is kept and shown.
    """
    validate(correct, label, rating, comment)
    if label and labels and label not in labels:
        raise LabelUnknown(label, tuple(labels))
    at = utc_naive(datetime.now(UTC) if now is None else now)
    with database.atomic():
        prediction = _prediction_for(prediction_id, version_id)
        if prediction is not None:
            version_id = prediction.version_id if version_id is None else version_id
            correct = _derive_correct(correct, label, prediction, tuple(labels))
        aggregate = Aggregate()
        _forget_earlier(prediction_id, client, aggregate)
        row = Feedback.create(prediction_id=prediction_id, version_id=version_id, model=model,
                              correct=correct, label=label, rating=rating, comment=comment,
                              created_at=at, client=client)  # fmt: skip
        if version_id is not None:
            aggregate.add_feedback(version_id, at, correct if prediction_id else None, rating)
        aggregate.save()
    return row


def _forget_earlier(prediction_id: str | None, client: str, aggregate: Aggregate) -> None:
    """Remove the client's earlier feedback on the prediction, and take it out of the rollups."""
    if prediction_id is None:
        return
    query = Feedback.select().where(Feedback.prediction_id == prediction_id, Feedback.client == client)
    for earlier in query:
        if earlier.version_id is not None:
            aggregate.add_feedback(
                earlier.version_id, earlier.created_at, earlier.correct, earlier.rating, -1
            )
        earlier.delete_instance()


def _prediction_for(prediction_id: str | None, version_id: int | None) -> Prediction | None:
    if prediction_id is None:
        return None
    prediction = find_prediction(prediction_id)
    if prediction is None and version_id is None:
        raise PredictionNotFound(prediction_id)
    return prediction


def _derive_correct(correct: bool | None, label: str | None, prediction: Prediction, labels) -> bool | None:
    if correct is not None or not label:
        return correct
    predicted = predicted_label(prediction, labels)
    return None if predicted is None else predicted == label
