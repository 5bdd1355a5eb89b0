"""Rollups per minute, quarter hour, hour and day; retention of the log and of the fine rollups (SQLite,
PostgreSQL)."""

import time
from collections import Counter
from datetime import datetime, timedelta

import pytest

from database.migrations import REGISTERED, AppliedMigration, migrate
from hub.config import Config
from hub.errors import SettingInvalid
from hub.housekeeping import Housekeeping
from monitor import compaction, driftruns
from monitor.feedback import record_feedback
from monitor.predlog import write_predictions
from monitor.rollups import COUNTERS, DAYS, GRAINS, HOURS, MINUTES, QUARTER_HOURS, bucket_of
from monitor.scorecard import scorecard, totals_by_version
from monitor.tables import COARSE_TABLES, Prediction

NOW = datetime(2026, 6, 15, 12, 0, 0)
DAY = timedelta(days=1)


def row(pid: str, at: datetime, version_id: int = 1, status: str = "ok", source: str = "hub", latency=5.0):
    inputs = '{"x": [1]}'
    return (pid, version_id, "iris", "1.0.0", at, latency, status, None, source, inputs, "{}", False)


def write(db, rows: list[tuple]) -> None:
    with db.atomic():
        write_predictions(rows)


def calls(db, count: int, start: datetime, version_id: int = 1, every=timedelta(seconds=7), **fields) -> list:
    """`count` calls from `start`, one per `every`, ids in time order; their ids."""
    ids = [f"{version_id:02d}{start:%Y%m%d%H%M%S}{i:06d}" for i in range(count)]
    write(db, [row(pid, start + every * i, version_id, **fields) for i, pid in enumerate(ids)])
    return ids


def sums(grain, version_id: int = 1) -> tuple[Counter, Counter]:
    """(counters, latency histogram) summed over every row of `grain` for the version."""
    totals: Counter = Counter()
    for r in grain.rollup.select().where(grain.rollup.version_id == version_id):
        totals.update({c: getattr(r, c) for c in COUNTERS})
    buckets: Counter = Counter()
    for b in grain.buckets.select().where(grain.buckets.version_id == version_id):
        buckets[b.bucket] += b.count
    return totals, buckets


def rows_before(grain, cutoff: datetime) -> int:
    return sum(t.select().where(grain.column(t) < cutoff).count() for t in (grain.rollup, grain.buckets))


def test_every_call_lands_in_the_minute_quarter_hour_hour_and_day_rows(db):
    latencies = [1.0, 20.0, 300.0, 4000.0]
    write(db, [row(f"ID{i}", NOW - timedelta(hours=30) + timedelta(minutes=17 * i), latency=latencies[i % 4],
                   status="error" if i % 5 == 0 else "ok") for i in range(200)])  # fmt: skip
    expected = Counter({bucket_of(x): 50 for x in latencies})
    for grain in GRAINS:
        totals, buckets = sums(grain)
        assert (totals["requests"], totals["errors"], buckets) == (200, 40, expected), grain.name
    hours = {r.hour: r.requests for r in HOURS.rollup.select()}
    from_log = Counter(p.created_at.replace(minute=0, second=0) for p in Prediction.select())
    assert hours == from_log
    quarters = {r.quarter_hour: r.requests for r in QUARTER_HOURS.rollup.select()}
    at = [p.created_at for p in Prediction.select()]
    assert quarters == Counter(t.replace(minute=t.minute - t.minute % 15, second=0) for t in at)
    days = {r.day: r.requests for r in DAYS.rollup.select()}
    assert days == Counter(p.created_at.replace(hour=0, minute=0, second=0) for p in Prediction.select())
    assert len(days) == 3


def test_a_batch_sent_again_is_counted_once(db):
    batch = [row(f"RESENT{i}", NOW + timedelta(seconds=i)) for i in range(10)]
    batch.append(row("RESENT0", NOW + timedelta(minutes=5)))  # the same id twice in one batch
    write(db, batch)
    write(db, batch[3:])  # a retry of part of it
    assert Prediction.select().count() == 10
    assert [sums(grain)[0]["requests"] for grain in GRAINS] == [10] * len(GRAINS) == [10] * 4
    assert sum(sums(MINUTES)[1].values()) == 10


def test_direct_calls_are_counted_apart(db):
    direct_error = row("D3", NOW, source="direct", status="error")
    write(db, [row("D1", NOW), row("D2", NOW, source="direct"), direct_error, row("D4", NOW, status="error")])
    for grain in GRAINS:
        totals = sums(grain)[0]
        assert (totals["requests"], totals["errors"], totals["direct"], totals["direct_errors"]) == (
            4,
            2,
            2,
            1,
        )
    assert scorecard(1, window=DAY, now=NOW + timedelta(minutes=1))["sources"] == {"hub": 2, "direct": 2}


def test_prune_deletes_old_calls_but_keeps_rollups_and_each_versions_first_calls(db):
    old = NOW - timedelta(days=40)
    calls(db, 10, old, status="error")  # errors first: not part of the drift reference
    calls(db, 600, old + timedelta(hours=1))
    calls(db, 5, NOW - timedelta(hours=1))
    calls(db, 50, old, version_id=2, status="error")  # no successful call: nothing to keep
    reference = driftruns.first_payloads(1, 500).last_id
    before = [scorecard(v, now=NOW) for v in (1, 2)]
    deleted = compaction.prune(NOW, retention_days=30, keep_first=500)
    assert deleted["predictions"] == 100 + 50
    assert Prediction.select().where(Prediction.version_id == 1).count() == 10 + 500 + 5
    assert Prediction.select().where(Prediction.version_id == 2).count() == 0
    assert driftruns.first_payloads(1, 500).last_id == reference
    assert [scorecard(v, now=NOW) for v in (1, 2)] == before
    assert (before[0]["requests"], before[1]["requests"]) == (615, 50)
    assert deleted["minute_rows"] > 0 and rows_before(MINUTES, NOW - timedelta(days=3)) == 0
    assert deleted["hour_rows"] == 0 and sums(HOURS)[0]["requests"] == 615


def test_retention_zero_keeps_every_call_but_still_compacts_rollups(db):
    calls(db, 20, NOW - timedelta(days=400))
    deleted = compaction.prune(NOW, retention_days=0)
    assert deleted["predictions"] == 0 and Prediction.select().count() == 20
    assert deleted["minute_rows"] > 0 and deleted["quarter_hour_rows"] > 0 and deleted["hour_rows"] > 0


def test_hour_rows_go_after_90_days_and_day_rows_stay(db):
    calls(db, 30, NOW - timedelta(days=100))
    calls(db, 3, NOW - timedelta(days=50))
    compaction.prune(NOW, retention_days=30, keep_first=0)
    assert rows_before(HOURS, NOW - timedelta(days=91)) == 0
    assert (
        rows_before(QUARTER_HOURS, NOW - timedelta(days=31)) == 0 and sums(QUARTER_HOURS)[0]["requests"] == 0
    )
    assert sums(HOURS)[0]["requests"] == 3
    assert (sums(DAYS)[0]["requests"], sum(sums(DAYS)[1].values())) == (33, 33)
    assert scorecard(1, window=timedelta(days=365), now=NOW)["requests"] == 33
    assert scorecard(1, window=timedelta(days=60), now=NOW)["requests"] == 3


def test_feedback_after_compaction_adjusts_hour_and_day_rows(db):
    (pid,) = calls(db, 1, NOW - timedelta(days=5))
    record_feedback(pid, None, "iris", correct=True, rating=5, now=NOW - timedelta(days=5), client="a")
    compaction.prune(NOW, retention_days=30)
    assert rows_before(MINUTES, NOW - timedelta(days=4)) == 0  # that minute's rows are gone
    record_feedback(
        pid, None, "iris", correct=False, now=NOW, client="a"
    )  # replaces it: -1 at the old minute
    for grain in (QUARTER_HOURS, HOURS, DAYS):
        totals = sums(grain)[0]
        assert (totals["feedback"], totals["correct"], totals["incorrect"], totals["rating_count"]) == (
            1,
            0,
            1,
            0,
        )
    card = scorecard(1, window=timedelta(days=30), now=NOW + timedelta(minutes=1))
    assert (card["feedback"]["count"], card["feedback"]["correct"], card["feedback"]["incorrect"]) == (
        1,
        0,
        1,
    )
    assert totals_by_version([1])[1]["correct"] == 0
    compaction.prune(NOW, retention_days=30)  # the minute row the take-back made goes again
    assert rows_before(MINUTES, NOW - timedelta(days=4)) == 0


@pytest.mark.parametrize("step_minutes", [1, 15, 60, 360, 1440])
def test_windowed_sums_are_the_same_at_every_step(db, step_minutes):
    start = datetime(2026, 6, 13)
    ids = calls(db, 400, start + timedelta(hours=3), every=timedelta(minutes=6), latency=12.0)
    calls(db, 50, start + timedelta(hours=30), every=timedelta(minutes=3), status="error", latency=900.0)
    for i, pid in enumerate(ids[:30]):
        record_feedback(pid, None, "iris", correct=i % 3 != 0, now=start + timedelta(hours=5, minutes=i))
    card = scorecard(1, since=start, until=start + 2 * DAY, step=timedelta(minutes=step_minutes), now=NOW)
    assert card["step"] == {1: "1m", 15: "15m", 60: "1h", 360: "6h", 1440: "1d"}[step_minutes]
    assert len(card["series"]) == 2 * 1440 // step_minutes
    got = (card["requests"], card["errors"], card["feedback"]["correct"], card["latency_ms"]["p50"])
    assert got == (450, 50, 20, scorecard(1, now=NOW)["latency_ms"]["p50"])
    assert sum(p["requests"] for p in card["series"]) == 450
    assert sum(p["feedback"] for p in card["series"]) == 30


def test_delete_in_chunks_deletes_every_matching_row(db):
    calls(db, 23, NOW)
    calls(db, 4, NOW, version_id=2)
    assert compaction.delete_in_chunks(Prediction, Prediction.version_id == 1, chunk=5) == 23
    assert Prediction.select().count() == 4


def test_migration_brings_hour_and_day_rows_up_from_minute_rows(db):
    calls(db, 90, NOW - timedelta(days=2), every=timedelta(minutes=41), latency=33.0)
    record_feedback(None, 1, "iris", rating=4, now=NOW - DAY)
    expected = {grain.name: sums(grain) for grain in GRAINS[1:]}
    hours = {r.hour: r.requests for r in HOURS.rollup.select()}
    db.drop_tables(COARSE_TABLES)  # a database from before hourly and daily rollups
    AppliedMigration.delete().where(
        AppliedMigration.component == "monitor", AppliedMigration.number >= 7
    ).execute()
    assert migrate(db) == [f"monitor:{n}" for n, _, _ in REGISTERED["monitor"] if n >= 7]
    assert {grain.name: sums(grain) for grain in GRAINS[1:]} == expected
    assert {r.hour: r.requests for r in HOURS.rollup.select()} == hours
    assert expected["day"][0]["rating_sum"] == 4


def test_housekeeping_prunes_in_the_background_until_stopped(db):
    calls(db, 40, NOW - timedelta(days=45))
    calls(db, 2, NOW - timedelta(minutes=5))
    housekeeping = Housekeeping(db, retention_days=30, keep_first=10, clock=lambda: NOW)
    housekeeping.start(interval=0.05)
    try:
        deadline = time.monotonic() + 10
        month = NOW - timedelta(days=31)  # a round deletes the calls, then the minute and quarter-hour rows
        while (
            Prediction.select().count() > 12 or rows_before(QUARTER_HOURS, month)
        ) and time.monotonic() < deadline:
            time.sleep(0.05)
    finally:
        housekeeping.stop()
    assert Prediction.select().count() == 12
    assert housekeeping.run_once() == {
        "predictions": 0,
        "minute_rows": 0,
        "quarter_hour_rows": 0,
        "hour_rows": 0,
    }


def test_retention_days_setting(tmp_path):
    assert Config.load(env={}, home=tmp_path).retention_days == 30
    assert Config.load(env={"AIDHUB_RETENTION_DAYS": "7"}, home=tmp_path).retention_days == 7
    with pytest.raises(SettingInvalid, match="AIDHUB_RETENTION_DAYS='-1' is not a valid setting"):
        Config.load(env={"AIDHUB_RETENTION_DAYS": "-1"}, home=tmp_path)


def test_scorecard_api_takes_a_window_and_a_step(client, publish):
    publish()
    card = client.get("/api/v1/models/demo-adder/scorecard?window=1h").get_json()
    assert (card["window"], card["step"], card["requests"], card["sources"]) == (
        "1h",
        "1m",
        0,
        {"hub": 0, "direct": 0},
    )
    assert len(card["series"]) in (60, 61) and card["series"][0]["p95"] is None
    card = client.get("/api/v1/models/demo-adder/scorecard?window=7d&step=90m").get_json()
    assert (card["window"], card["step"], len(card["series"])) == ("7d", "90m", 112 + 1)  # quarter hours
    card = client.get("/api/v1/models/demo-adder/scorecard?window=40d&step=90m").get_json()
    assert (card["window"], card["step"], len(card["series"])) == ("40d", "2h", 480 + 1)  # past them: hours
    assert client.get("/api/v1/models/demo-adder/scorecard").get_json()["step"] == "15m"
    assert client.get("/api/v1/models/demo-adder/scorecard?window=all").get_json()["window"] is None


@pytest.mark.parametrize(
    "query, message",
    [
        (
            "window=soon",
            "The scorecard window 'soon' is not a duration; write minutes, hours or days, e.g. 24h",
        ),
        ("step=0m", "The scorecard step '0m' is not a duration; write minutes, hours or days, e.g. 5m"),
        ("window=30d&step=1m", "A window of 30d in steps of 1m is 43200 points; the most is 5000."),
    ],
)
def test_scorecard_api_refuses_a_bad_window_or_step(client, publish, query, message):
    publish()
    reply = client.get(f"/api/v1/models/demo-adder/scorecard?{query}")
    assert reply.status_code == 422
    assert reply.get_json()["error"].startswith(message)
