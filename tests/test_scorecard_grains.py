"""A scorecard reads the coarsest period table whose period divides its step, and gets the very sums the
minute rows give; quarter-hour rows brought up from the minute rows of an older database (migration 14)
are used only from where they are complete. SQLite and PostgreSQL."""

from collections import Counter
from dataclasses import replace
from datetime import datetime, timedelta

import pytest

from database.migrations import AppliedMigration, migrate
from monitor import compaction
from monitor.feedback import record_feedback
from monitor.predlog import write_predictions
from monitor.rollups import DAYS, HOURS, MINUTES, QUARTER_HOURS
from monitor.scorecard import _read, plan, scorecard
from monitor.tables import QUARTER_TABLES, GrainStart, Prediction

NOW = datetime(2026, 6, 15, 12, 0, 0)
LATENCIES = (1.5, 12.25, 300.0, 4000.0, 0.25, 75.5)  # exact in binary: float sums do not depend on order


def log_calls(db, start: datetime, count: int, every: timedelta, version_id: int = 1) -> list[str]:
    """`count` calls from `start`, mixed latencies, statuses and sources; their ids."""
    rows = [
        (f"{version_id}{start:%Y%m%d%H%M%S}{i:06d}", version_id, "iris", "1.0.0", start + every * i,
         LATENCIES[i % len(LATENCIES)], "error" if i % 7 == 0 else "ok", None,
         "direct" if i % 3 == 0 else "hub", '{"x": [1]}', "{}", False)
        for i in range(count)
    ]  # fmt: skip
    with db.atomic():
        write_predictions(rows)
    return [r[0] for r in rows]


@pytest.fixture
def traffic(db):
    """Two days of calls on version 1 (one every 97 s, some feedback) and a little on version 2."""
    ids = log_calls(db, NOW - timedelta(days=2), 1781, timedelta(seconds=97))
    log_calls(db, NOW - timedelta(hours=5), 40, timedelta(minutes=3), version_id=2)
    for i, pid in enumerate(ids[::50]):
        record_feedback(pid, None, "iris", correct=i % 4 != 0, rating=1 + i % 5, now=NOW - timedelta(hours=i))
    return db


@pytest.mark.parametrize(
    "window, step, grain",
    [
        (timedelta(hours=24), timedelta(minutes=15), QUARTER_HOURS),
        (timedelta(hours=47), timedelta(minutes=30), QUARTER_HOURS),
        (timedelta(hours=36), timedelta(minutes=45), QUARTER_HOURS),
        (timedelta(hours=6), timedelta(minutes=5), MINUTES),
        (timedelta(hours=48), timedelta(hours=1), HOURS),
        (timedelta(hours=47), timedelta(hours=2), HOURS),
        (timedelta(hours=48), timedelta(hours=12), HOURS),
        (timedelta(days=2), timedelta(days=1), DAYS),
    ],
)
def test_coarse_and_minute_reads_agree_step_by_step(traffic, window, step, grain):
    until = NOW - timedelta(minutes=7)  # a window end inside a step: the last step is whole periods too
    p = plan(1, None, until, window, step, NOW)
    assert (p.grain, p.step) == (grain, step)
    coarse, fine = _read(1, p), _read(1, replace(p, grain=MINUTES))
    assert coarse == fine
    counts, histograms = coarse
    assert sum(c["requests"] for c in counts.values()) == sum(sum(h.values()) for h in histograms.values())
    in_window = Prediction.select().where(Prediction.version_id == 1, Prediction.created_at >= p.first,
                                          Prediction.created_at < p.last + p.step)  # fmt: skip
    assert sum(c["requests"] for c in counts.values()) == in_window.count() > 0


def test_a_day_of_quarter_hours_is_the_same_scorecard_as_the_minutes_summed(traffic):
    card = scorecard(1, window=timedelta(hours=24), step=timedelta(minutes=15), now=NOW)
    by_minute = scorecard(1, window=timedelta(hours=24), step=timedelta(minutes=1), now=NOW)
    assert {k: v for k, v in card.items() if k not in ("series", "step")} == {
        k: v for k, v in by_minute.items() if k not in ("series", "step")
    }
    day = Prediction.select().where(
        Prediction.version_id == 1, Prediction.created_at >= NOW - timedelta(days=1)
    )
    assert (card["step"], len(card["series"]), card["requests"]) == ("15m", 96, day.count())
    assert card["requests"] > 800 and card["feedback"]["count"] > 0
    per_quarter: Counter = Counter()
    for point in by_minute["series"]:
        at = datetime.fromisoformat(point["at"].rstrip("Z"))
        per_quarter[at.replace(minute=at.minute - at.minute % 15)] += point["requests"]
    assert [p["requests"] for p in card["series"]] == [
        per_quarter[datetime.fromisoformat(p["at"].rstrip("Z"))] for p in card["series"]
    ]


def test_migration_14_brings_quarter_hours_up_from_the_minute_rows_still_held(db):
    log_calls(db, NOW - timedelta(days=10), 200, timedelta(minutes=4))  # minute rows pruned below
    log_calls(db, NOW - timedelta(days=1, minutes=7), 300, timedelta(minutes=2))
    compaction.prune(NOW, retention_days=30)
    held = Counter()
    for minute in MINUTES.rollup.select():
        held[minute.minute.replace(minute=minute.minute.minute - minute.minute.minute % 15)] += (
            minute.requests
        )
    recent = scorecard(1, window=timedelta(hours=30), step=timedelta(minutes=15), now=NOW)
    db.drop_tables(list(QUARTER_TABLES))  # a database from before quarter-hour rollups
    AppliedMigration.delete().where(
        AppliedMigration.component == "monitor", AppliedMigration.number == 14
    ).execute()
    assert migrate(db) == ["monitor:14"]
    assert {r.quarter_hour: r.requests for r in QUARTER_HOURS.rollup.select()} == held
    assert min(r.minute for r in MINUTES.rollup.select()) == datetime(2026, 6, 14, 11, 53)
    assert GrainStart.get(GrainStart.grain == "quarter_hour").since == datetime(2026, 6, 14, 12, 0)
    assert scorecard(1, window=timedelta(hours=30), step=timedelta(minutes=15), now=NOW) == recent
    older = scorecard(1, window=timedelta(days=12), step=timedelta(minutes=15), now=NOW)
    assert (older["step"], older["requests"]) == ("1h", 500)  # the quarter hours lack the first 200 calls


def test_a_fresh_database_has_quarter_hours_complete_from_the_start(db):
    assert GrainStart.select().count() == 0
    log_calls(db, NOW - timedelta(days=10), 20, timedelta(minutes=4))
    card = scorecard(1, window=timedelta(days=12), step=timedelta(minutes=30), now=NOW)
    assert (card["step"], card["requests"]) == ("30m", 20)
