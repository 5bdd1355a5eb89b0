"""Per-version scorecards, computed from Rollup and LatencyBucket rows only (never the log)."""

from __future__ import annotations

import math
from collections import Counter
from collections.abc import Mapping
from datetime import datetime, timedelta

from peewee import fn

from monitor.rollups import COUNTERS, bucket_range
from monitor.tables import LatencyBucket, Rollup
from vocab.times import minute_of, utc_naive

Z95 = 1.959964


def wilson_interval(successes: int, n: int, z: float = Z95) -> tuple[float, float] | None:
    """Wilson score interval of a binomial proportion; None when n is 0."""
    if n <= 0:
        return None
    p = successes / n
    denominator = 1 + z * z / n
    centre = (p + z * z / (2 * n)) / denominator
    half = z * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n)) / denominator
    return max(0.0, centre - half), min(1.0, centre + half)


def percentile(histogram: Mapping[int, int], q: float) -> float | None:
    """The q-quantile (0 < q <= 1) of a bucket histogram, interpolated linearly in its bucket."""
    total = sum(histogram.values())
    if total <= 0:
        return None
    rank, seen = q * total, 0
    for bucket in sorted(histogram):
        count = histogram[bucket]
        if count and seen + count >= rank:
            lower, upper = bucket_range(bucket)
            return round(lower + (upper - lower) * (rank - seen) / count, 1)
        seen += count
    return round(bucket_range(max(histogram))[1], 1)


def _ratio(part: int | float, whole: int | float, digits: int = 4) -> float | None:
    return round(part / whole, digits) if whole else None


def _window(query, model, since: datetime | None, until: datetime | None):
    if since is not None:
        query = query.where(model.minute >= minute_of(since))
    if until is not None:
        query = query.where(model.minute < utc_naive(until))
    return query


def _rollup_rows(version_id: int, since, until) -> list[Rollup]:
    query = Rollup.select().where(Rollup.version_id == version_id).order_by(Rollup.minute)
    return list(_window(query, Rollup, since, until))


def _bucket_rows(version_id: int, since, until) -> list[tuple[datetime, int, int]]:
    query = LatencyBucket.select(LatencyBucket.minute, LatencyBucket.bucket, LatencyBucket.count)
    query = query.where(LatencyBucket.version_id == version_id)
    return list(_window(query, LatencyBucket, since, until).tuples())


def _totals(rows: list[Rollup]) -> Counter:
    totals: Counter = Counter()
    for row in rows:
        totals.update({c: getattr(row, c) for c in COUNTERS})
    return totals


def _latency(totals: Counter, histogram: Mapping[int, int]) -> dict:
    mean = _ratio(totals["latency_sum_ms"], totals["requests"], 1)
    return {f"p{q}": percentile(histogram, q / 100) for q in (50, 95, 99)} | {"mean": mean}


def _feedback(totals: Counter) -> dict:
    judged = totals["correct"] + totals["incorrect"]
    bounds = wilson_interval(totals["correct"], judged) or (None, None)
    return {
        "count": totals["feedback"],
        "correct": totals["correct"],
        "incorrect": totals["incorrect"],
        "accuracy": _ratio(totals["correct"], judged),
        "accuracy_low": None if bounds[0] is None else round(bounds[0], 4),
        "accuracy_high": None if bounds[1] is None else round(bounds[1], 4),
        "mean_rating": _ratio(totals["rating_sum"], totals["rating_count"], 2),
        "ratings": totals["rating_count"],
    }


def feedback_by_version(version_ids: list[int]) -> dict[int, dict]:
    """The scorecard's `feedback` part of each version, from one grouped query over the rollups."""
    if not version_ids:
        return {}
    sums = [fn.SUM(getattr(Rollup, c)).alias(c) for c in COUNTERS]
    query = Rollup.select(Rollup.version_id, *sums).where(Rollup.version_id.in_(version_ids))
    found = {
        row.version_id: _feedback(Counter({c: getattr(row, c) or 0 for c in COUNTERS}))
        for row in query.group_by(Rollup.version_id)
    }
    return {vid: found.get(vid) or _feedback(Counter()) for vid in version_ids}


def _step_start(minute: datetime, step: int) -> datetime:
    return minute - timedelta(minutes=(minute.hour * 60 + minute.minute) % step)


def _series(rows: list[Rollup], buckets: list, step: int) -> list[dict]:
    points: dict[datetime, Counter] = {}
    histograms: dict[datetime, Counter] = {}
    for row in rows:
        point = points.setdefault(_step_start(row.minute, step), Counter())
        point.update(requests=row.requests, errors=row.errors)
    for minute, bucket, count in buckets:
        histograms.setdefault(_step_start(minute, step), Counter())[bucket] += count
    return [
        {"minute": at.isoformat() + "Z", "requests": p["requests"], "errors": p["errors"],
         "p95": percentile(histograms.get(at, {}), 0.95)}
        for at, p in sorted(points.items())
    ]  # fmt: skip


def scorecard(
    version_id: int,
    since: datetime | None = None,
    until: datetime | None = None,
    step_minutes: int = 1,
) -> dict:
    """Requests, errors, latency percentiles, feedback accuracy and a per-step series.

    `since`/`until` are UTC datetimes (naive = UTC) bounding the minutes counted; `step_minutes`
    (a divisor of 1440) coarsens the series for long windows.
    """
    rows = _rollup_rows(version_id, since, until)
    buckets = _bucket_rows(version_id, since, until)
    histogram: Counter = Counter()
    for _, bucket, count in buckets:
        histogram[bucket] += count
    totals = _totals(rows)
    return {
        "version_id": version_id,
        "requests": totals["requests"],
        "errors": totals["errors"],
        "error_rate": _ratio(totals["errors"], totals["requests"]),
        "latency_ms": _latency(totals, histogram),
        "feedback": _feedback(totals),
        "series": _series(rows, buckets, step_minutes),
    }
