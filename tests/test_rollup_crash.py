"""A prediction log killed with SIGKILL mid-stream leaves rollups (minute, quarter hour, hour and day) that
log exactly: the calls and their rollups are written in one transaction. SQLite and PostgreSQL."""

import os
import signal
import subprocess
import sys
import time
from collections import Counter
from pathlib import Path

from monitor.rollups import GRAINS
from monitor.tables import Prediction

REPO = Path(__file__).resolve().parent.parent
VERSION = 5
CALL_COUNTERS = ("requests", "errors", "direct", "direct_errors", "latency_sum_ms")
WRITER = """
import itertools, sys, time
from datetime import datetime, timedelta
import monitor.migrations
from database.connection import connect, database
from monitor.predlog import PredictionLog, PredictionRecord

db = connect(sys.argv[1])
database.initialize(db)
start, offset = datetime(2026, 3, 1), int(sys.argv[2])
with PredictionLog(db, flush_interval=0.005, max_batch=250) as plog:
    for i in itertools.count(offset):
        plog.record(PredictionRecord(
            version_id=5, model="iris", version="1.0.0", latency_ms=1.0 + i % 700,
            status="error" if i % 9 == 0 else "ok", source="direct" if i % 4 == 0 else "hub",
            inputs={"x": [i]}, created_at=start + timedelta(seconds=7 * i)))
        if i % 50 == 0:
            time.sleep(0.002)
"""


def logged() -> int:
    return Prediction.select().where(Prediction.version_id == VERSION).count()


def run_and_kill(database_url: str, offset: int, at_least: int) -> None:
    """Start a writer, wait until `at_least` calls are stored, and kill it with SIGKILL."""
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    child = subprocess.Popen([sys.executable, "-c", WRITER, database_url, str(offset)], cwd=REPO, env=env)
    try:
        deadline = time.monotonic() + 60
        while logged() < at_least and time.monotonic() < deadline and child.poll() is None:
            time.sleep(0.01)
        assert child.poll() is None, f"the writer ended early with status {child.returncode}"
        assert logged() >= at_least, "the writer stored too few calls in 60 s"
    finally:
        child.send_signal(signal.SIGKILL)
        child.wait()
    assert child.returncode == -signal.SIGKILL


def from_log() -> Counter:
    totals: Counter = Counter()
    query = Prediction.select(Prediction.status, Prediction.source, Prediction.latency_ms)
    for status, source, latency in query.where(Prediction.version_id == VERSION).tuples():
        error, direct = status == "error", source == "direct"
        totals.update(requests=1, errors=error, direct=direct, direct_errors=error and direct)
        totals["latency_sum_ms"] += latency
    return totals


def in_rollups(grain) -> tuple[Counter, int]:
    """(the grain's counters of calls, summed over its rows; calls in its latency buckets)."""
    totals: Counter = Counter()
    for row in grain.rollup.select().where(grain.rollup.version_id == VERSION):
        totals.update({c: getattr(row, c) for c in CALL_COUNTERS})
    buckets = sum(b.count for b in grain.buckets.select().where(grain.buckets.version_id == VERSION))
    return totals, buckets


def test_rollups_match_the_log_after_the_writer_is_killed_mid_stream(db, database_url):
    stored = 0
    for round_, extra in enumerate((1500, 2300, 3100)):  # three kills, at different points of a batch
        run_and_kill(database_url, offset=round_ * 1_000_000, at_least=stored + extra)
        stored = logged()
    log = from_log()
    assert log["requests"] == stored and log["direct"] > 0 and log["errors"] > 0
    for grain in GRAINS:
        totals, buckets = in_rollups(grain)
        assert buckets == stored, grain.name
        assert {k: v for k, v in totals.items() if k != "latency_sum_ms"} == {
            k: v for k, v in log.items() if k != "latency_sum_ms"
        }, grain.name
        assert abs(totals["latency_sum_ms"] - log["latency_sum_ms"]) < 1e-6 * log["latency_sum_ms"]
