"""When a serving version is due a drift run: hourly, and after N new calls (on SQLite and PostgreSQL)."""

from datetime import timedelta

from hub.driftschedule import DriftSchedule
from monitor import driftruns
from monitor.rollups import Aggregate
from vocab.times import utcnow

HOUR = timedelta(hours=1)


def schedule(after_calls: int = 1000) -> DriftSchedule:
    return DriftSchedule(lambda version: None, HOUR, after_calls)


def run_at(version_id: int, ago: timedelta) -> None:
    run = driftruns.record_run(version_id, (utcnow() - HOUR, utcnow()), "package", status="done")
    run.created_at = utcnow() - ago
    run.save()


def calls(version_id: int, count: int) -> None:
    aggregate = Aggregate()
    for _ in range(count):
        aggregate.add_prediction(version_id, utcnow(), 5.0, True)
    aggregate.save()


def test_a_version_never_compared_is_due(db):
    assert schedule().due(7) is True


def test_a_version_compared_within_the_hour_is_due_only_after_enough_new_calls(db):
    run_at(7, timedelta(minutes=10))
    calls(7, 999)
    assert schedule().due(7) is False
    calls(7, 1)
    assert schedule().due(7) is True
    assert driftruns.calls_since(7, utcnow() - timedelta(minutes=1)) == 1000


def test_a_version_compared_an_hour_ago_is_due(db):
    run_at(7, timedelta(minutes=61))
    assert schedule().due(7) is True
    assert schedule().due(8) is True  # another version's run does not count for it
