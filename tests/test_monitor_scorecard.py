"""Scorecards from rollups: exact numbers, Wilson bounds, histogram percentiles, series."""

import random
from collections import Counter
from datetime import datetime, timedelta

from monitor.feedback import record_feedback
from monitor.predlog import PredictionLog, PredictionRecord
from monitor.rollups import BOUNDS_MS, OVERFLOW, bucket_of, bucket_range
from monitor.scorecard import (
    auto_step,
    feedback_by_version,
    format_duration,
    percentile,
    scorecard,
    totals_by_version,
    wilson_interval,
)
from vocab.times import parse_duration

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


SERIES_KEYS = {
    "at", "minute", "requests", "errors", "direct", "p50", "p95", "p99",
    "feedback", "correct", "incorrect", "accuracy", "accuracy_low", "accuracy_high",
}  # fmt: skip


def test_series_per_minute_fills_empty_steps_and_since(db):
    log_predictions(db, [5.0] * 3, ["ok", "error", "ok"], start=T0)
    log_predictions(db, [50.0] * 2, start=T0 + timedelta(minutes=2))
    card = scorecard(7, window=timedelta(minutes=5), now=T0 + timedelta(minutes=5))
    assert (card["window"], card["step"]) == ("5m", "1m")
    series = card["series"]
    assert [(p["at"], p["requests"], p["errors"]) for p in series] == [
        ("2025-03-01T12:00:00Z", 3, 1),
        ("2025-03-01T12:01:00Z", 0, 0),
        ("2025-03-01T12:02:00Z", 2, 0),
        ("2025-03-01T12:03:00Z", 0, 0),
        ("2025-03-01T12:04:00Z", 0, 0),
    ]
    assert all(set(p) == SERIES_KEYS and p["minute"] == p["at"] for p in series)
    assert series[0]["p95"] == percentile({bucket_of(5.0): 3}, 0.95)
    assert (series[1]["p95"], series[1]["accuracy"]) == (None, None)
    later = scorecard(7, since=T0 + timedelta(minutes=1, seconds=30), now=T0 + timedelta(minutes=3))
    assert (later["requests"], [p["requests"] for p in later["series"]]) == (2, [0, 2])
    earlier = scorecard(7, since=T0, until=T0 + timedelta(minutes=1), now=T0 + timedelta(minutes=3))
    assert (earlier["requests"], len(earlier["series"])) == (3, 1)


def test_series_steps_group_minutes(db):
    log_predictions(db, [5.0] * 2, start=T0 + timedelta(minutes=1))
    log_predictions(db, [5.0] * 4, start=T0 + timedelta(minutes=4))
    log_predictions(db, [5.0] * 1, start=T0 + timedelta(minutes=5))
    card = scorecard(
        7, window=timedelta(minutes=10), step=timedelta(minutes=5), now=T0 + timedelta(minutes=10)
    )
    assert [(p["minute"], p["requests"]) for p in card["series"]] == [
        ("2025-03-01T12:00:00Z", 6),
        ("2025-03-01T12:05:00Z", 1),
    ]


def test_automatic_steps_give_48_to_96_points():
    steps = {w: auto_step(parse_duration(w)) for w in ("1h", "24h", "7d", "30d")}
    assert {w: format_duration(s) for w, s in steps.items()} == {
        "1h": "1m", "24h": "15m", "7d": "2h", "30d": "12h",
    }  # fmt: skip
    assert all(48 <= parse_duration(w) / s <= 96 for w, s in steps.items())


def test_all_time_reads_day_rows_in_steps_of_days(db):
    log_predictions(db, [5.0] * 3, start=T0)
    log_predictions(db, [5.0] * 2, start=T0 + timedelta(days=2))
    card = scorecard(7, now=T0 + timedelta(days=3))
    assert (card["window"], card["step"], card["requests"]) == (None, "1d", 5)
    assert [(p["at"], p["requests"]) for p in card["series"]] == [
        ("2025-03-01T00:00:00Z", 3), ("2025-03-02T00:00:00Z", 0),
        ("2025-03-03T00:00:00Z", 2), ("2025-03-04T00:00:00Z", 0),
    ]  # fmt: skip


def test_a_window_past_minute_retention_reads_quarter_hour_rows(db):
    log_predictions(db, [5.0] * 4, start=T0 + timedelta(minutes=20))
    card = scorecard(7, window=timedelta(days=5), step=timedelta(minutes=5), now=T0 + timedelta(days=4))
    assert (card["step"], card["requests"]) == ("15m", 4)  # 5-minute steps need minute rows: gone
    assert [(p["at"], p["requests"]) for p in card["series"] if p["requests"]] == [
        ("2025-03-01T12:15:00Z", 4)
    ]
    assert (card["series"][0]["at"], len(card["series"])) == ("2025-02-28T12:00:00Z", 480)


def test_a_window_past_quarter_hour_retention_reads_hour_rows(db):
    log_predictions(db, [5.0] * 4, start=T0 + timedelta(minutes=20))
    card = scorecard(7, window=timedelta(days=40), step=timedelta(minutes=15), now=T0 + timedelta(days=35))
    assert (card["step"], card["requests"]) == ("1h", 4)
    assert [(p["at"], p["requests"]) for p in card["series"] if p["requests"]] == [
        ("2025-03-01T12:00:00Z", 4)
    ]
    assert (card["series"][0]["at"], len(card["series"])) == ("2025-02-24T12:00:00Z", 960)


def test_sources_and_per_step_accuracy(db):
    with PredictionLog(db, flush_interval=60) as plog:
        for i, source in enumerate(["hub", "direct", "direct"]):
            plog.record(PredictionRecord(version_id=7, model="iris", version="1.0.0", latency_ms=5.0,
                                         source=source, id=f"01SOURCE{i}", created_at=T0))  # fmt: skip
    for i, correct in enumerate([True, True, False]):
        record_feedback(f"01SOURCE{i}", 7, "iris", correct=correct, now=T0 + timedelta(seconds=5))
    card = scorecard(7, window=timedelta(hours=1), now=T0 + timedelta(minutes=30))
    assert card["sources"] == {"hub": 1, "direct": 2}
    point = next(p for p in card["series"] if p["at"] == "2025-03-01T12:00:00Z")
    assert (point["requests"], point["direct"], point["feedback"], point["correct"]) == (3, 2, 3, 2)
    low, high = wilson_interval(2, 3)
    assert (point["accuracy"], point["accuracy_low"], point["accuracy_high"]) == (
        0.6667, round(low, 4), round(high, 4),
    )  # fmt: skip


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


def test_totals_by_version_are_the_all_time_sums_of_every_counter(db):
    log_predictions(db, [10.0, 30.0], ["ok", "error"], version_id=7)
    log_predictions(db, [5.0], version_id=8, start=T0 + timedelta(days=40))
    totals = totals_by_version([7, 8, 9])
    assert (totals[7]["requests"], totals[7]["errors"], totals[7]["latency_sum_ms"]) == (2, 1, 40.0)
    assert (totals[8]["requests"], totals[8]["direct"], totals[9]) == (1, 0, Counter())
    assert totals[7]["requests"] == scorecard(7)["requests"]
