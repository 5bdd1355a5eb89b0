"""Per-version rollups per minute, quarter hour, hour and day: fixed latency buckets, in-memory
aggregation, upserts.

Every increment is written through to the four periods in the caller's transaction (the minute,
quarter-hour, hour and day rows of a prediction or feedback change together), so the coarse rows never
lag the log and a late change to an old minute (feedback taken back) lands in the coarser periods too.
Quarter hours exist so that a scorecard in 15- or 30-minute steps (a day's view) reads 96 periods, not
1440 minutes. Old minute, quarter-hour and hour rows are deleted later (monitor.compaction); day rows
are kept forever.

Upserts are `INSERT ... ON CONFLICT (...) DO UPDATE SET col = col + excluded.col`, which SQLite
and PostgreSQL both run, so concurrent writers add to a row instead of overwriting it.
"""

from __future__ import annotations

import bisect
import functools
from collections import Counter
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime, timedelta

from peewee import Model

from database import connection
from database.connection import rows_per_statement, values_sql
from monitor.tables import (
    LatencyBucket,
    LatencyBucketDay,
    LatencyBucketHour,
    LatencyBucketQuarter,
    Rollup,
    RollupDay,
    RollupHour,
    RollupQuarter,
)
from vocab.times import minute_of

# Upper bounds (ms) of the latency buckets, log-spaced from 0.5 ms to 60 s; bucket len(BOUNDS_MS)
# is the overflow (> 60 s). Stored rows refer to buckets by index: never change these values.
# (Made once as round(0.5 * 120_000 ** (i / 39), 3) for i in range(40); kept literal on purpose.)
BOUNDS_MS: tuple[float, ...] = (
    0.5, 0.675, 0.911, 1.229, 1.659, 2.239, 3.023, 4.08, 5.506, 7.432,
    10.031, 13.538, 18.272, 24.662, 33.286, 44.926, 60.637, 81.841, 110.461, 149.088,
    201.223, 271.59, 366.563, 494.749, 667.759, 901.271, 1216.44, 1641.823, 2215.959, 2990.867,
    4036.756, 5448.387, 7353.656, 9925.188, 13395.97, 18080.465, 24403.1, 32936.725, 44454.511,
    60000.0,
)  # fmt: skip
OVERFLOW = len(BOUNDS_MS)
COUNTERS = (
    "requests", "errors", "latency_sum_ms", "feedback",
    "correct", "incorrect", "rating_sum", "rating_count", "direct", "direct_errors",
)  # fmt: skip


@dataclass(frozen=True)
class Grain:
    """One period of rollups: its tables, their time column (`name`) and how long its rows are kept."""

    name: str  # "minute" | "quarter_hour" | "hour" | "day": the time column of both tables
    length: timedelta
    rollup: type[Model]
    buckets: type[Model]
    kept: timedelta | None  # None: forever

    def start(self, at: datetime) -> datetime:
        """The start of the period holding `at` (a naive UTC datetime)."""
        at = minute_of(at)
        if self.length >= DAY:
            return at.replace(hour=0, minute=0)
        if self.length >= HOUR:
            return at.replace(minute=0)
        return at.replace(minute=at.minute - at.minute % (self.length // MINUTE))

    def column(self, table: type[Model]):
        return getattr(table, self.name)


MINUTE, HOUR, DAY = timedelta(minutes=1), timedelta(hours=1), timedelta(days=1)
QUARTER_HOUR = timedelta(minutes=15)
MINUTES = Grain("minute", MINUTE, Rollup, LatencyBucket, timedelta(days=3))
QUARTER_HOURS = Grain("quarter_hour", QUARTER_HOUR, RollupQuarter, LatencyBucketQuarter, timedelta(days=30))
HOURS = Grain("hour", HOUR, RollupHour, LatencyBucketHour, timedelta(days=90))
DAYS = Grain("day", DAY, RollupDay, LatencyBucketDay, None)
GRAINS = (MINUTES, QUARTER_HOURS, HOURS, DAYS)  # finest first; each period divides the next

RollupKey = tuple[int, datetime]  # (version_id, period start)
BucketKey = tuple[int, datetime, int]  # (version_id, period start, bucket)


def bucket_of(latency_ms: float) -> int:
    """Index of the first bucket whose upper bound is >= latency_ms (OVERFLOW past the last)."""
    return bisect.bisect_left(BOUNDS_MS, max(latency_ms, 0.0))


def bucket_range(bucket: int) -> tuple[float, float]:
    """(lower, upper) bound in ms of a bucket; the overflow bucket is (60000, 60000)."""
    lower = BOUNDS_MS[bucket - 1] if bucket > 0 else 0.0
    return lower, BOUNDS_MS[bucket] if bucket < OVERFLOW else lower


class Aggregate:
    """Rollup and bucket increments of a batch, summed in memory per minute; `save()` upserts them
    into every period's tables."""

    def __init__(self) -> None:
        self.rollups: dict[RollupKey, Counter] = {}
        self.buckets: Counter[BucketKey] = Counter()

    def add_prediction(
        self, version_id: int, at: datetime, latency_ms: float, ok: bool, direct: bool = False
    ) -> None:
        minute = minute_of(at)
        row = self._row(version_id, minute)
        row["requests"] += 1
        row["errors"] += 0 if ok else 1
        row["latency_sum_ms"] += latency_ms
        row["direct"] += direct
        row["direct_errors"] += direct and not ok
        self.buckets[(version_id, minute, bucket_of(latency_ms))] += 1

    def add_feedback(
        self, version_id: int, at: datetime, correct: bool | None, rating: int | None, sign: int = 1
    ) -> None:
        """Count one feedback (`sign` -1: take one back, when a client replaces theirs)."""
        row = self._row(version_id, minute_of(at))
        row["feedback"] += sign
        row["correct"] += sign * (correct is True)
        row["incorrect"] += sign * (correct is False)
        row["rating_sum"] += sign * (rating or 0)
        row["rating_count"] += sign * (rating is not None)

    def _row(self, version_id: int, minute: datetime) -> Counter:
        row = self.rollups.get((version_id, minute))
        if row is None:
            row = self.rollups[(version_id, minute)] = Counter()
        return row

    def save(self) -> None:
        """Upsert the sums into every period's tables; call inside the caller's transaction. Rows go in
        one order (table by table, keys ascending), so concurrent writers on PostgreSQL wait for one
        another's row locks instead of deadlocking."""
        for grain in GRAINS:
            upsert_rollups(grain, self._rollup_rows(grain))
            upsert_buckets(grain, self._bucket_rows(grain))

    def _rollup_rows(self, grain: Grain) -> list[dict]:
        sums: dict[RollupKey, Counter] = {}
        for (vid, minute), counts in self.rollups.items():
            sums.setdefault((vid, grain.start(minute)), Counter()).update(counts)
        return [
            {"version_id": vid, grain.name: start, **{c: counts[c] for c in COUNTERS}}
            for (vid, start), counts in sorted(sums.items())
        ]

    def _bucket_rows(self, grain: Grain) -> list[dict]:
        sums: Counter[BucketKey] = Counter()
        for (vid, minute, bucket), count in self.buckets.items():
            sums[(vid, grain.start(minute), bucket)] += count
        return [
            {"version_id": vid, grain.name: start, "bucket": bucket, "count": count}
            for (vid, start, bucket), count in sorted(sums.items())
        ]


def _chunks(rows: list, size: int) -> Iterable[list]:
    return (rows[i : i + size] for i in range(0, len(rows), size))


def upsert_rollups(grain: Grain, rows: list[dict]) -> None:
    _upsert(grain.rollup, ("version_id", grain.name), COUNTERS, rows)


def upsert_buckets(grain: Grain, rows: list[dict]) -> None:
    _upsert(grain.buckets, ("version_id", grain.name, "bucket"), ("count",), rows)


def _upsert(table: type[Model], keys: tuple[str, ...], sums: tuple[str, ...], rows: list[dict]) -> None:
    """Add `rows` ({column: value}) to `table`'s rows with the same `keys`, inserting those missing."""
    db = connection.database.obj
    columns = keys + sums
    for chunk in _chunks(rows, rows_per_statement(len(columns))):
        sql = _upsert_sql(table._meta.table_name, keys, sums, len(chunk), db.param)
        db.execute_sql(sql, [row[column] for row in chunk for column in columns])


@functools.lru_cache(maxsize=256)
def _upsert_sql(table: str, keys: tuple[str, ...], sums: tuple[str, ...], rows: int, param: str) -> str:
    """The upsert's text, written once per shape: peewee's per-call SQL generation cost ~5 ms of every
    prediction-log flush (the 8 tables), holding the GIL and, under gevent, the hub's event loop."""
    columns = ", ".join(f'"{c}"' for c in keys + sums)
    values = values_sql(param, len(keys) + len(sums), rows)
    target = ", ".join(f'"{c}"' for c in keys)
    update = ", ".join(f'"{c}" = "{table}"."{c}" + EXCLUDED."{c}"' for c in sums)
    return f'INSERT INTO "{table}" ({columns}) VALUES {values} ON CONFLICT ({target}) DO UPDATE SET {update}'
