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


def predicted_label(prediction: Prediction | None) -> str | None:
    """The one text label a prediction output, if its outputs hold exactly one, else None."""
    try:
        outputs = json.loads(prediction.outputs) if prediction and prediction.outputs else None
    except ValueError:
        return None
    if not isinstance(outputs, dict) or len(outputs) != 1:
        return None
    value = next(iter(outputs.values()))
    if isinstance(value, list) and len(value) == 1:
        value = value[0]
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
) -> Feedback:
    """Validate, store the feedback and bump the (version, minute) rollup in one transaction.

    With a prediction id and no version id, the version comes from the logged prediction
    (PredictionNotFound if it is not logged). A label without `correct` is compared with the
    prediction's single text label when it has one.
    """
    validate(correct, label, rating, comment)
    at = utc_naive(datetime.now(UTC) if now is None else now)
    with database.atomic():
        prediction = _prediction_for(prediction_id, version_id)
        if prediction is not None:
            version_id = prediction.version_id if version_id is None else version_id
            correct = _derive_correct(correct, label, prediction)
        row = Feedback.create(prediction_id=prediction_id, version_id=version_id, model=model,
                              correct=correct, label=label, rating=rating, comment=comment,
                              created_at=at)  # fmt: skip
        _bump_rollup(version_id, at, correct, rating)
    return row


def _prediction_for(prediction_id: str | None, version_id: int | None) -> Prediction | None:
    if prediction_id is None:
        return None
    prediction = find_prediction(prediction_id)
    if prediction is None and version_id is None:
        raise PredictionNotFound(prediction_id)
    return prediction


def _derive_correct(correct: bool | None, label: str | None, prediction: Prediction) -> bool | None:
    if correct is not None or not label:
        return correct
    predicted = predicted_label(prediction)
    return None if predicted is None else predicted == label


def _bump_rollup(version_id: int | None, at: datetime, correct: bool | None, rating: int | None):
    if version_id is None:
        return  # feedback on a model generally: stored, not attributable to a version's rollup
    aggregate = Aggregate()
    aggregate.add_feedback(version_id, at, correct, rating)
    aggregate.save()
