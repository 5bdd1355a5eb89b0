"""Feedback validation (exact messages) and storage with rollups, on SQLite and PostgreSQL."""

from datetime import UTC, datetime

import pytest

from monitor.feedback import (
    FeedbackInvalid,
    LabelUnknown,
    PredictionNotFound,
    find_prediction,
    record_feedback,
    validate,
)
from monitor.predlog import PredictionLog, PredictionRecord
from monitor.tables import Feedback, Rollup

NOW = datetime(2025, 3, 1, 12, 30, 45)


def logged(db, outputs) -> str:
    record = PredictionRecord(version_id=4, model="iris", version="1.0.0", latency_ms=3.0,
                              outputs=outputs, created_at=NOW)  # fmt: skip
    with PredictionLog(db, flush_interval=60) as plog:
        plog.record(record)
    return record.id


@pytest.mark.parametrize(
    ("values", "message"),
    [
        ({"rating": 6}, "rating: must be a whole number from 1 to 5, not 6."),
        ({"rating": 0}, "rating: must be a whole number from 1 to 5, not 0."),
        ({"rating": True}, "rating: must be a whole number from 1 to 5, not True."),
        ({"correct": "yes"}, "correct: must be true or false, not 'yes'."),
        ({"comment": "x" * 2001}, "comment: is 2001 characters long; shorten it to 2000."),
        ({"label": 3}, "label: must be text, not int."),
        ({}, "feedback: give at least one of correct, label, rating, comment."),
        ({"label": "", "comment": ""}, "feedback: give at least one of correct, label, rating, comment."),
    ],
)
def test_invalid_feedback_names_the_field_and_the_fix(values, message):
    args = {"correct": None, "label": None, "rating": None, "comment": None} | values
    with pytest.raises(FeedbackInvalid) as caught:
        validate(**args)
    assert str(caught.value) == message


def test_valid_feedback_passes():
    assert validate(correct=False, label=None, rating=None, comment=None) is None
    assert validate(correct=None, label=None, rating=5, comment="x" * 2000) is None  # at the cap


def test_feedback_on_a_prediction_takes_its_version_and_bumps_the_rollup(db):
    prediction_id = logged(db, {"label": ["setosa"]})
    row = record_feedback(prediction_id, None, "iris", correct=False, rating=2, now=NOW)
    assert (row.version_id, row.correct, row.rating) == (4, False, 2)
    rollup = Rollup.get(Rollup.version_id == 4)
    assert (rollup.minute, rollup.requests, rollup.feedback) == (datetime(2025, 3, 1, 12, 30), 1, 1)
    assert (rollup.correct, rollup.incorrect, rollup.rating_sum, rollup.rating_count) == (0, 1, 2, 1)


def test_a_label_matching_the_single_predicted_label_counts_as_correct(db):
    prediction_id = logged(db, {"label": ["setosa"]})
    assert record_feedback(prediction_id, None, "iris", label="setosa", now=NOW, client="a").correct is True
    assert (
        record_feedback(prediction_id, None, "iris", label="virginica", now=NOW, client="b").correct is False
    )
    assert Rollup.get().correct == 1 and Rollup.get().incorrect == 1


def test_a_label_is_judged_against_the_label_the_model_pointed_at(db):
    prediction_id = logged(db, {"label": [1], "probabilities": [[0.1, 0.8, 0.1]]})
    labels = ("setosa", "versicolor", "virginica")
    row = record_feedback(prediction_id, None, "iris", label="versicolor", now=NOW, labels=labels)
    assert row.correct is True and Rollup.get().correct == 1


def test_a_label_that_is_not_one_of_the_models_labels_is_refused(db):
    prediction_id = logged(db, {"label": [1]})
    with pytest.raises(LabelUnknown) as caught:
        record_feedback(prediction_id, None, "iris", label="rose", now=NOW, labels=("setosa", "versicolor"))
    assert str(caught.value) == "label: 'rose' is not one of the model's labels: setosa, versicolor."
    assert Feedback.select().count() == 0


def test_a_client_giving_feedback_again_replaces_theirs_in_the_rollups_too(db):
    prediction_id = logged(db, {"label": ["setosa"]})
    record_feedback(prediction_id, None, "iris", correct=True, rating=5, now=NOW, client="10.0.0.7")
    record_feedback(prediction_id, None, "iris", correct=False, rating=1, now=NOW, client="10.0.0.7")
    assert [(f.correct, f.rating) for f in Feedback.select()] == [(False, 1)]
    rollup = Rollup.get()
    assert (rollup.feedback, rollup.correct, rollup.incorrect, rollup.rating_sum) == (1, 0, 1, 1)


def test_feedback_on_a_model_generally_is_kept_but_not_counted_toward_accuracy(db):
    row = record_feedback(None, 4, "iris", correct=True, rating=4, now=NOW)
    assert Feedback.get_by_id(row.id).correct is True
    rollup = Rollup.get()
    assert (rollup.feedback, rollup.correct, rollup.incorrect, rollup.rating_count) == (1, 0, 0, 1)


def test_a_label_is_not_judged_when_the_output_is_not_one_text_label(db):
    prediction_id = logged(db, {"label": [0], "proba": [[0.9, 0.1]]})
    assert record_feedback(prediction_id, None, "iris", label="setosa", now=NOW).correct is None
    assert Rollup.get().feedback == 1 and Rollup.get().correct == 0


def test_feedback_on_an_unknown_prediction_is_not_found(db):
    with pytest.raises(PredictionNotFound) as caught:
        record_feedback("01NOPE", None, "iris", correct=True, now=NOW)
    assert str(caught.value) == "No prediction '01NOPE' is logged. Check the id (X-Prediction-Id)."
    assert Feedback.select().count() == 0


def test_feedback_on_a_queued_prediction_uses_the_given_version(db):
    row = record_feedback("01QUEUED", 9, "iris", correct=True, now=NOW)
    assert (row.prediction_id, row.version_id) == ("01QUEUED", 9)
    assert Rollup.get(Rollup.version_id == 9).correct == 1


def test_feedback_on_a_model_generally_is_stored_without_a_rollup(db):
    row = record_feedback(None, None, "iris", comment="great", now=NOW)
    assert Feedback.get_by_id(row.id).comment == "great"
    assert Rollup.select().count() == 0


def test_aware_times_are_stored_in_utc(db):
    at = datetime(2025, 3, 1, 12, 30, 45, tzinfo=UTC).astimezone()
    row = record_feedback(None, 2, "iris", rating=5, now=at)
    assert Feedback.get_by_id(row.id).created_at == NOW


def test_find_prediction(db):
    prediction_id = logged(db, {"label": ["setosa"]})
    assert find_prediction(prediction_id).version_id == 4
    assert find_prediction("01MISSING") is None
