"""Per-version, per-minute rollups: fixed latency buckets, in-memory aggregation and upserts.

Upserts are `INSERT ... ON CONFLICT (...) DO UPDATE SET col = col + excluded.col`, which SQLite
and PostgreSQL both run, so concurrent writers add to a row instead of overwriting it.
"""

from __future__ import annotations

import bisect
from collections import Counter
from collections.abc import Iterable
from datetime import datetime

from peewee import EXCLUDED

from database.connection import rows_per_statement
from monitor.tables import LatencyBucket, Rollup
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
    "correct", "incorrect", "rating_sum", "rating_count",
)  # fmt: skip

RollupKey = tuple[int, datetime]  # (version_id, minute)
BucketKey = tuple[int, datetime, int]  # (version_id, minute, bucket)


def bucket_of(latency_ms: float) -> int:
    """Index of the first bucket whose upper bound is >= latency_ms (OVERFLOW past the last)."""
    return bisect.bisect_left(BOUNDS_MS, max(latency_ms, 0.0))


def bucket_range(bucket: int) -> tuple[float, float]:
    """(lower, upper) bound in ms of a bucket; the overflow bucket is (60000, 60000)."""
    lower = BOUNDS_MS[bucket - 1] if bucket > 0 else 0.0
    return lower, BOUNDS_MS[bucket] if bucket < OVERFLOW else lower


class Aggregate:
    """Rollup and bucket increments of a batch, summed in memory before one upsert each."""

    def __init__(self) -> None:
        self.rollups: dict[RollupKey, Counter] = {}
        self.buckets: Counter[BucketKey] = Counter()

    def add_prediction(self, version_id: int, at: datetime, latency_ms: float, ok: bool) -> None:
        minute = minute_of(at)
        row = self._row(version_id, minute)
        row["requests"] += 1
        row["errors"] += 0 if ok else 1
        row["latency_sum_ms"] += latency_ms
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
        """Upsert the sums; call inside the caller's transaction."""
        upsert_rollups(self._rollup_rows())
        upsert_buckets(self._bucket_rows())

    def _rollup_rows(self) -> list[dict]:
        return [
            {"version_id": vid, "minute": minute, **{c: sums[c] for c in COUNTERS}}
            for (vid, minute), sums in self.rollups.items()
        ]

    def _bucket_rows(self) -> list[dict]:
        return [
            {"version_id": vid, "minute": minute, "bucket": bucket, "count": count}
            for (vid, minute, bucket), count in self.buckets.items()
        ]


def _chunks(rows: list, size: int) -> Iterable[list]:
    return (rows[i : i + size] for i in range(0, len(rows), size))


def upsert_rollups(rows: list[dict]) -> None:
    size = rows_per_statement(len(COUNTERS) + 2)
    update = {getattr(Rollup, c): getattr(Rollup, c) + getattr(EXCLUDED, c) for c in COUNTERS}
    target = [Rollup.version_id, Rollup.minute]
    for chunk in _chunks(rows, size):
        Rollup.insert_many(chunk).on_conflict(conflict_target=target, update=update).execute()


def upsert_buckets(rows: list[dict]) -> None:
    size = rows_per_statement(4)
    update = {LatencyBucket.count: LatencyBucket.count + EXCLUDED.count}
    target = [LatencyBucket.version_id, LatencyBucket.minute, LatencyBucket.bucket]
    for chunk in _chunks(rows, size):
        LatencyBucket.insert_many(chunk).on_conflict(conflict_target=target, update=update).execute()
