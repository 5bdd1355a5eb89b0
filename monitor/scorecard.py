"""Per-version scorecards over a window, computed from the rollups only (never the log).

A window is read from one period table: the coarsest whose period divides the step (day rows for
whole-day steps, hour rows for whole hours, quarter-hour rows for 15 and 30 minutes, minute rows for
the rest) and that still holds the whole window (minute rows are kept 3 days, quarter hours 30, hours
90; monitor.compaction). Steps are aligned to the Unix epoch, and so are the periods, so every step is
whole periods and the window starts at a step's start: no ragged edge is left for finer rows, and the
sums are the same whichever table is read. So a read touches about (points x latency buckets) rows,
however many predictions it counts.
"""

from __future__ import annotations

import math
import sqlite3
from collections import Counter, defaultdict
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from datetime import datetime, timedelta

from peewee import PostgresqlDatabase, fn

from database.connection import database
from monitor.rollups import COUNTERS, DAY, DAYS, GRAINS, HOUR, MINUTE, Grain, bucket_range
from monitor.tables import GrainStart
from vocab.times import utc_naive, utcnow

Z95 = 1.959964
EPOCH = datetime(1970, 1, 1)
NICE_STEPS = tuple(
    timedelta(minutes=m) for m in (1, 2, 5, 10, 15, 30, 60, 120, 180, 360, 720, 1440, 2880, 10080, 43200)
)
MAX_POINTS = 96  # the automatic step is the smallest nice one giving at most this many points


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
    return percentiles(histogram, (q,))[0]


def percentiles(histogram: Mapping[int, int], qs: tuple[float, ...] = (0.5, 0.95, 0.99)) -> list:
    """`percentile` for each of `qs` (ascending), in one pass over the histogram."""
    total = sum(histogram.values())
    if total <= 0:
        return [None] * len(qs)
    found: list[float] = []
    seen = 0
    for bucket, count in sorted(histogram.items()):
        while len(found) < len(qs) and count and seen + count >= (rank := qs[len(found)] * total):
            lower, upper = bucket_range(bucket)
            found.append(round(lower + (upper - lower) * (rank - seen) / count, 1))
        seen += count
    return found + [round(bucket_range(max(histogram))[1], 1)] * (len(qs) - len(found))


def _ratio(part: int | float, whole: int | float, digits: int = 4) -> float | None:
    return round(part / whole, digits) if whole else None


def _latency(totals: Mapping, histogram: Mapping[int, int]) -> dict:
    mean = _ratio(totals["latency_sum_ms"], totals["requests"], 1)
    return dict(zip(("p50", "p95", "p99"), percentiles(histogram), strict=True)) | {"mean": mean}


def _accuracy(correct: int, incorrect: int) -> dict:
    bounds = wilson_interval(correct, correct + incorrect) or (None, None)
    return {
        "accuracy": _ratio(correct, correct + incorrect),
        "accuracy_low": None if bounds[0] is None else round(bounds[0], 4),
        "accuracy_high": None if bounds[1] is None else round(bounds[1], 4),
    }


def _feedback(totals: Mapping) -> dict:
    return {
        "count": totals["feedback"],
        "correct": totals["correct"],
        "incorrect": totals["incorrect"],
        **_accuracy(totals["correct"], totals["incorrect"]),
        "mean_rating": _ratio(totals["rating_sum"], totals["rating_count"], 2),
        "ratings": totals["rating_count"],
    }


def totals_by_version(version_ids: Iterable[int]) -> dict[int, Counter]:
    """All-time sums of every rollup counter (COUNTERS) per version, from one grouped query over the
    day rows; an empty Counter for a version without any."""
    version_ids = list(version_ids)
    if not version_ids:
        return {}
    table = DAYS.rollup
    sums = [fn.SUM(getattr(table, c)) for c in COUNTERS]
    query = table.select(table.version_id, *sums).where(table.version_id.in_(version_ids))
    found = {
        vid: Counter({c: value or 0 for c, value in zip(COUNTERS, values, strict=True)})
        for vid, *values in query.group_by(table.version_id).tuples()
    }
    return {vid: found.get(vid, Counter()) for vid in version_ids}


def latency_by_version(version_ids: Iterable[int]) -> dict[int, dict[int, int]]:
    """All-time latency histogram ({bucket: calls}) per version, from one grouped query over the day
    rows; an empty one for a version without any."""
    found: dict[int, dict[int, int]] = {vid: {} for vid in version_ids}
    if not found:
        return {}
    table = DAYS.buckets
    query = table.select(table.version_id, table.bucket, fn.SUM(table.count))
    query = query.where(table.version_id.in_(list(found))).group_by(table.version_id, table.bucket)
    for vid, bucket, count in _fetch(query):
        found[vid][bucket] = int(count)
    return found


def feedback_by_version(version_ids: list[int]) -> dict[int, dict]:
    """The scorecard's `feedback` part of each version (all time), from one grouped query."""
    return {vid: _feedback(totals) for vid, totals in totals_by_version(version_ids).items()}


# --- windows and steps ----------------------------------------------------------------------


def format_duration(span: timedelta) -> str:
    """timedelta(minutes=15) -> '15m'; whole days as 'd', whole hours as 'h'."""
    for unit, length in (("d", DAY), ("h", HOUR)):
        if span % length == timedelta(0):
            return f"{span // length}{unit}"
    return f"{math.ceil(span / MINUTE)}m"


def auto_step(span: timedelta) -> timedelta:
    """The smallest nice step (1m, 2m, 5m, ... 12h, 1d, ...) giving at most MAX_POINTS steps."""
    return next((s for s in NICE_STEPS if span <= s * MAX_POINTS), NICE_STEPS[-1])


def floor_to(at: datetime, step: timedelta) -> datetime:
    """The start of the step (epoch-aligned) holding `at`."""
    return EPOCH + step * ((at - EPOCH) // step)


def grain_for(step: timedelta, start: datetime | None, now: datetime) -> tuple[Grain, timedelta]:
    """(table, step) of a read in steps of `step` from `start` (None: all time): the coarsest period
    table whose period divides the step and that holds the whole window; else the finest other table
    that holds it, the step rounded up to whole periods of it (a 5-minute step past the minutes kept
    reads quarter hours in steps of 15 minutes)."""
    since = {row.grain: row.since for row in GrainStart.select()}
    dividing = [g for g in reversed(GRAINS) if step % g.length == timedelta(0)]
    for grain in dividing + [g for g in GRAINS if g not in dividing]:
        rounded = grain.length * math.ceil(step / grain.length)
        first = None if start is None else floor_to(start, rounded)
        if _holds(grain, first, now, since.get(grain.name)):
            return grain, rounded
    return DAYS, DAY * math.ceil(step / DAY)


def _holds(grain: Grain, first: datetime | None, now: datetime, since: datetime | None) -> bool:
    """Whether `grain` holds every row from `first` (None: all time) on: not yet pruned (see
    monitor.compaction), and not older than the table itself (tables.GrainStart)."""
    if grain.kept is not None and (first is None or first < now - grain.kept):
        return False
    return since is None or (first is not None and first >= since)


@dataclass(frozen=True)
class Plan:
    """What one scorecard reads: the rows of `grain` from `lower` to before `upper` (None: no bound),
    in steps of `step` whose starts run from `first` to `last`."""

    grain: Grain
    step: timedelta
    first: datetime
    last: datetime
    lower: datetime | None
    upper: datetime | None


def plan(version_id: int, since, until, window, step, now: datetime) -> Plan | None:
    """The plan of a scorecard (see `scorecard`); None for all time when the version has no rows."""
    end = utc_naive(until) if until is not None else now
    start = end - window if window else utc_naive(since) if since is not None else None
    all_time = start is None
    if all_time and (start := _first_day(version_id)) is None:
        return None
    step = step or max(auto_step(max(end - start, MINUTE)), DAY if all_time else MINUTE)
    grain, step = grain_for(step, None if all_time else start, now)
    first, last = floor_to(start, step), floor_to(end - timedelta(microseconds=1), step)
    lower = None if all_time else first
    upper = None if all_time and until is None else last + step
    return Plan(grain, step, first, last, lower, upper)


def _first_day(version_id: int) -> datetime | None:
    table = DAYS.rollup
    row = table.select(table.day).where(table.version_id == version_id).order_by(table.day).first()
    return None if row is None else row.day


def _bounded(query, column, p: Plan):
    if p.lower is not None:
        query = query.where(column >= p.lower)
    return query if p.upper is None else query.where(column < p.upper)


def _step_number(column, step: timedelta):
    """SQL for the number of the (epoch-aligned) step holding `column`: floor(epoch seconds / step)."""
    seconds = int(step.total_seconds())
    if isinstance(database.obj, PostgresqlDatabase):
        return fn.FLOOR(fn.date_part("epoch", column) / seconds)
    if sqlite3.sqlite_version_info >= (3, 38, 0):
        return fn.unixepoch(column) / seconds  # parses twice as fast as strftime('%s')
    return fn.strftime("%s", column).cast("INTEGER") / seconds


def _fetch(query) -> list[tuple]:
    """The rows of a query of sums, as the driver returns them (skipping peewee's per-value work)."""
    return database.obj.execute_sql(*query.sql()).fetchall()


def _step_of(column, p: Plan) -> tuple:
    """(SQL for the step holding `column`, a function from its value to the step's start). When a step
    is one period the column itself is the step: the database groups in its index's order, no sort."""
    if p.step == p.grain.length:
        starts: dict = {}  # a period's text (SQLite) parsed once
        return column, lambda value: starts.get(value) or starts.setdefault(value, column.python_value(value))
    return _step_number(column, p.step), lambda number: EPOCH + p.step * int(number)


def _read(version_id: int, p: Plan) -> tuple[dict[datetime, Counter], dict[datetime, dict]]:
    """(counters, latency histogram) per step start, summed per step by the database."""
    table = p.grain.rollup
    step, start = _step_of(p.grain.column(table), p)
    sums = [fn.SUM(getattr(table, c)) for c in COUNTERS]
    query = table.select(step, *sums).where(table.version_id == version_id).group_by(step)
    counts = {
        start(at): Counter(dict(zip(COUNTERS, values, strict=True)))
        for at, *values in _fetch(_bounded(query, p.grain.column(table), p))
    }
    table = p.grain.buckets
    step, start = _step_of(p.grain.column(table), p)
    query = table.select(step, table.bucket, fn.SUM(table.count)).where(table.version_id == version_id)
    histograms: dict = defaultdict(dict)
    for at, bucket, count in _fetch(_bounded(query, p.grain.column(table), p).group_by(step, table.bucket)):
        histograms[at][bucket] = count  # one row per step and bucket
    return counts, {start(at): histogram for at, histogram in histograms.items()}


def _point(at: datetime, counts: Mapping, histogram: Mapping[int, int]) -> dict:
    when = at.isoformat() + "Z"
    return {
        "at": when, "minute": when,  # "minute": the key older callers read
        "requests": counts["requests"], "errors": counts["errors"], "direct": counts["direct"],
        **dict(zip(("p50", "p95", "p99"), percentiles(histogram), strict=True)),
        "feedback": counts["feedback"], "correct": counts["correct"], "incorrect": counts["incorrect"],
        **_accuracy(counts["correct"], counts["incorrect"]),
    }  # fmt: skip


def _series(p: Plan, counts: dict, histograms: dict) -> list[dict]:
    """A point per step from the first to the last, zeros (and nulls) where nothing was counted."""
    steps = (p.last - p.first) // p.step + 1
    starts = (p.first + p.step * i for i in range(max(steps, 0)))
    return [_point(at, counts.get(at, Counter()), histograms.get(at, {})) for at in starts]


def _summed(parts: Iterable[Mapping]) -> Counter:
    total: Counter = Counter()
    for part in parts:
        total.update(part)
    return total


def scorecard(
    version_id: int,
    since: datetime | None = None,
    until: datetime | None = None,
    *,
    window: timedelta | None = None,
    step: timedelta | None = None,
    now: datetime | None = None,
) -> dict:
    """Requests, errors, sources, latency percentiles, feedback accuracy and a per-step series.

    The window is the last `window` before `until` (default: now), else from `since`, else all time
    (None for both). `step` (default: the nice one giving 48-96 points) is rounded up to whole periods
    of the table read (see the module); the window starts at a step's start. UTC datetimes, naive = UTC.
    """
    p = plan(version_id, since, until, window, step, utc_naive(now) if now else utcnow())
    counts, histograms = _read(version_id, p) if p else ({}, {})
    totals, histogram = _summed(counts.values()), _summed(histograms.values())
    return {
        "version_id": version_id,
        "window": format_duration(window) if window else None,
        "step": format_duration(p.step) if p else None,
        "requests": totals["requests"],
        "errors": totals["errors"],
        "error_rate": _ratio(totals["errors"], totals["requests"]),
        "sources": {"hub": totals["requests"] - totals["direct"], "direct": totals["direct"]},
        "latency_ms": _latency(totals, histogram),
        "feedback": _feedback(totals),
        "series": _series(p, counts, histograms) if p else [],
    }
