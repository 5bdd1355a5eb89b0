"""Scorecards from rollups: exact numbers, Wilson bounds, histogram percentiles, series."""

import random
from datetime import datetime, timedelta

from monitor.feedback import record_feedback
from monitor.predlog import PredictionLog, PredictionRecord
from monitor.rollups import BOUNDS_MS, OVERFLOW, bucket_of, bucket_range
from monitor.scorecard import feedback_by_version, percentile, scorecard, wilson_interval

T0 = datetime(2025, 3, 1, 12, 0, 0)


def log_predictions(db, latencies, statuses=None, start=T0, version_id=7):
    statuses = statuses or ["ok"] * len(latencies)
    with PredictionLog(db, flush_interval=60) as plog:
        for i, (latency, status) in enumerate(zip(latencies, statuses, strict=True)):
            plog.record(PredictionRecord(version_id=version_id, model="iris", version="1.0.0",
                                         latency_ms=latency, status=status,
                                         created_at=start + timedelta(seconds=i)))  # fmt: skip


def rounded(pair):
    return tuple(round(x, 4) for x in pair)


def test_wilson_interval_known_values():
    assert rounded(wilson_interval(8, 10)) == (0.4902, 0.9433)
    assert rounded(wilson_interval(7, 9)) == (0.4526, 0.9368)
    assert rounded(wilson_interval(0, 10)) == (0.0, 0.2775)
    assert rounded(wilson_interval(10, 10)) == (0.7225, 1.0)
    assert wilson_interval(0, 0) is None


def test_buckets_have_fixed_bounds():
    assert (len(BOUNDS_MS), BOUNDS_MS[0], BOUNDS_MS[-1], OVERFLOW) == (40, 0.5, 60000.0, 40)
    assert [bucket_of(x) for x in (-1, 0, 0.5, 0.5001, 60000, 60000.1)] == [0, 0, 0, 1, 39, 40]
    assert bucket_range(0) == (0.0, 0.5) and bucket_range(40) == (60000.0, 60000.0)


def test_percentile_interpolates_inside_the_bucket():
    lower, upper = bucket_range(10)  # 7.432 .. 10.031
    assert percentile({10: 10}, 0.5) == round(lower + (upper - lower) * 0.5, 1)
    assert percentile({10: 10}, 1.0) == round(upper, 1)
    assert percentile({}, 0.5) is None


def test_scorecard_exact_numbers(db):
    log_predictions(db, [10.0] * 8 + [20.0, 30.0], ["ok"] * 8 + ["error", "error"])
    for i, correct in enumerate([True] * 7 + [False] * 2):  # judged: on predictions (queued ids)
        record_feedback(f"01PREDICTION{i}", 7, "iris", correct=correct, now=T0)
    for rating in (5, 4, 4):
        record_feedback(None, 7, "iris", rating=rating, now=T0 + timedelta(minutes=1))
    card = scorecard(7)
    assert (card["requests"], card["errors"], card["error_rate"]) == (10, 2, 0.2)
    assert card["latency_ms"]["mean"] == 13.0
    assert card["feedback"] == {
        "count": 12, "correct": 7, "incorrect": 2, "accuracy": 0.7778,
        "accuracy_low": 0.4526, "accuracy_high": 0.9368, "mean_rating": 4.33, "ratings": 3,
    }  # fmt: skip


def test_scorecard_of_an_unused_version_is_empty_not_zero(db):
    card = scorecard(99)
    assert (card["requests"], card["error_rate"], card["series"]) == (0, None, [])
    assert card["latency_ms"] == {"p50": None, "p95": None, "p99": None, "mean": None}
    assert card["feedback"]["accuracy"] is None and card["feedback"]["mean_rating"] is None


def test_percentiles_are_within_one_bucket_of_the_truth(db):
    rng = random.Random(1)
    latencies = [rng.lognormvariate(3.0, 0.8) for _ in range(1000)]
    log_predictions(db, latencies)
    card = scorecard(7)
    ordered = sorted(latencies)
    for q in (50, 95, 99):
        truth = ordered[int(q / 100 * len(ordered)) - 1]
        lower, upper = bucket_range(bucket_of(truth))
        assert abs(card["latency_ms"][f"p{q}"] - truth) <= upper - lower


def test_series_per_minute_and_since(db):
    log_predictions(db, [5.0] * 3, ["ok", "error", "ok"], start=T0)
    log_predictions(db, [50.0] * 2, start=T0 + timedelta(minutes=2))
    series = scorecard(7)["series"]
    assert [(p["minute"], p["requests"], p["errors"]) for p in series] == [
        ("2025-03-01T12:00:00Z", 3, 1),
        ("2025-03-01T12:02:00Z", 2, 0),
    ]
    assert series[0]["p95"] == percentile({bucket_of(5.0): 3}, 0.95)
    later = scorecard(7, since=T0 + timedelta(minutes=1, seconds=30))
    assert (later["requests"], len(later["series"])) == (2, 1)
    assert scorecard(7, until=T0 + timedelta(minutes=1))["requests"] == 3


def test_series_steps_group_minutes(db):
    log_predictions(db, [5.0] * 2, start=T0 + timedelta(minutes=1))
    log_predictions(db, [5.0] * 4, start=T0 + timedelta(minutes=4))
    log_predictions(db, [5.0] * 1, start=T0 + timedelta(minutes=5))
    series = scorecard(7, step_minutes=5)["series"]
    assert [(p["minute"], p["requests"]) for p in series] == [
        ("2025-03-01T12:00:00Z", 6),
        ("2025-03-01T12:05:00Z", 1),
    ]


def test_versions_are_kept_apart(db):
    log_predictions(db, [5.0] * 3, version_id=1)
    log_predictions(db, [5.0] * 2, version_id=2)
    assert (scorecard(1)["requests"], scorecard(2)["requests"]) == (3, 2)


def test_feedback_of_many_versions_in_one_query_matches_their_scorecards(db):
    log_predictions(db, [10.0] * 4, version_id=7)
    for i, correct in enumerate([True, True, False]):
        record_feedback(f"01SEVEN{i}", 7, "iris", correct=correct, rating=4, now=T0)
    record_feedback("01EIGHT", 8, "iris", correct=True, now=T0)
    found = feedback_by_version([7, 8, 9])
    assert found == {v: scorecard(v)["feedback"] for v in (7, 8, 9)}
    assert (found[7]["accuracy"], found[9]["count"]) == (0.6667, 0)
