"""How long a scorecard takes as the log grows (target <= 50 ms, and flat from 10k to 1M calls).

`run()` logs calls of one version spread evenly over 30 days into a fresh SQLite file opened the way
the hub opens it, through `write_predictions` (so with their minute, quarter-hour, hour and day
rollups) in big transactions, then times `scorecard()` for the windows the model page offers: 24h in
15m steps, 7d in 2h, 30d in 12h, and all time. Each figure is the median of 21 reads, in
milliseconds. The log grows in stages (10k, then 100k, then 1M calls), the same file throughout.
"""

from __future__ import annotations

import random
import statistics
import time
from datetime import datetime, timedelta

import monitor.migrations  # noqa: F401 - registers the monitor's schema steps
from benchmarks.predlog import scratch_database
from monitor.predlog import new_prediction_id, write_predictions
from monitor.scorecard import format_duration, scorecard

NOW = datetime(2026, 12, 1)
SPAN = timedelta(days=30)
SIZES = (10_000, 100_000, 1_000_000)
WINDOWS = (("24h", timedelta(hours=24), timedelta(minutes=15)), ("7d", timedelta(days=7), timedelta(hours=2)),
           ("30d", SPAN, timedelta(hours=12)), ("all", None, None))  # fmt: skip
BATCH = 20_000
RUNS = 21
INPUTS = '{"features":[[5.1,3.5,1.4,0.2]]}'
OUTPUTS = '{"label":["setosa"]}'


def _rows(count: int, stage: int, rng: random.Random):
    """`count` calls evenly over the 30 days before NOW; `stage` shifts them off earlier stages'."""
    gap = SPAN / count
    for i in range(count):
        at = NOW - SPAN + gap * i + gap * stage / len(SIZES)
        status = "error" if rng.random() < 0.02 else "ok"
        yield (new_prediction_id(at.timestamp()), 1, "iris", "1.0.0", at, rng.lognormvariate(3.0, 0.8),
               status, None, "direct" if i % 5 == 0 else "hub", INPUTS, OUTPUTS, False)  # fmt: skip


def _fill(db, count: int, stage: int) -> float:
    """Log `count` more calls in transactions of BATCH; seconds taken."""
    started, rows = time.perf_counter(), _rows(count, stage, random.Random(stage))
    while batch := [row for _, row in zip(range(BATCH), rows, strict=False)]:
        with db.atomic():
            write_predictions(batch)
    return time.perf_counter() - started


def _median_ms(window: timedelta | None, step: timedelta | None) -> float:
    times = []
    for _ in range(RUNS):
        started = time.perf_counter()
        scorecard(1, window=window, step=step, now=NOW)
        times.append(time.perf_counter() - started)
    return statistics.median(times) * 1000


def _measure(db, sizes) -> list[dict]:
    rows, logged = [], 0
    for stage, size in enumerate(sizes):
        seconds = _fill(db, size - logged, stage)
        logged = size
        rows.append({"name": f"fill to {size:,} calls (write_predictions)", "value": round(seconds, 1),
                     "unit": "s", "target": None})  # fmt: skip
        for label, window, step in WINDOWS:
            shown = f"{label}/{format_duration(step)}" if step else label
            rows.append({"name": f"scorecard {shown}, {size:,} calls", "value": _median_ms(window, step),
                         "unit": "ms", "target": "<= 50"})  # fmt: skip
    return rows


def run(sizes: tuple[int, ...] = SIZES) -> list[dict]:
    with scratch_database() as db:
        return _measure(db, sizes)
