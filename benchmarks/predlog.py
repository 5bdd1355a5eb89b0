"""How many predictions per second the prediction log sustains into SQLite (target >= 5,000).

`run()` logs `rows` predictions from `threads` threads into a fresh SQLite file opened the way
the hub opens it (WAL, foreign keys, busy timeout), with the default PredictionLog settings, and
times from the first record() until flush() returns: that is the end-to-end rate, caller-side
encoding included. It also reports the mean cost of one record() call on the caller's thread,
measured with the writer idle, and the writer alone (rows queued first, then written in
transactions of max_batch rows).
"""

from __future__ import annotations

import tempfile
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from peewee import Database

import monitor.migrations  # noqa: F401 - registers the monitor's schema steps
from database.connection import connect, database
from database.migrations import migrate
from monitor.predlog import BATCH_BYTES, PredictionLog, PredictionRecord

INPUTS = {"features": [[5.1, 3.5, 1.4, 0.2]]}
OUTPUTS = {"label": ["setosa"], "probabilities": [[0.97, 0.02, 0.01]]}


def _record(plog: PredictionLog, count: int, offset: int = 0) -> None:
    for i in range(count):
        plog.record(PredictionRecord(version_id=1 + (offset + i) % 4, model="iris",
                                     version="1.0.0", latency_ms=2.0 + i % 50,
                                     inputs=INPUTS, outputs=OUTPUTS))  # fmt: skip


def _end_to_end(db, rows: int, threads: int) -> float:
    """Rows/s from the first record() until flush() returns, default settings."""
    per_thread = rows // threads
    with PredictionLog(db) as plog:
        started = time.perf_counter()
        workers = [threading.Thread(target=_record, args=(plog, per_thread, k * per_thread))
                   for k in range(threads)]  # fmt: skip
        for worker in workers:
            worker.start()
        for worker in workers:
            worker.join()
        plog.flush(timeout=600)
        elapsed = time.perf_counter() - started
    return per_thread * threads / elapsed


def _queue_then_write(db, rows: int) -> tuple[float, float]:
    """(record() seconds per call with the writer idle, writer rows/s draining the queue)."""
    with PredictionLog(db, flush_interval=3600, max_batch=rows + 1, batch_bytes=2**62) as plog:
        started = time.perf_counter()
        _record(plog, rows)
        per_call = (time.perf_counter() - started) / rows
        plog.max_batch, plog.batch_bytes = 2000, BATCH_BYTES
        started = time.perf_counter()
        plog.flush(timeout=600)
        return per_call, rows / (time.perf_counter() - started)


@contextmanager
def scratch_database() -> Iterator[Database]:
    """A migrated SQLite database in a temp folder, bound to the one proxy while in use."""
    previous = database.obj
    with tempfile.TemporaryDirectory(prefix="aidhub-bench-") as folder:
        db = connect(f"sqlite:///{Path(folder) / 'hub.db'}")
        database.initialize(db)
        try:
            migrate(db)
            yield db
        finally:
            db.close()
            database.initialize(previous)


def run(rows: int = 50_000, threads: int = 4) -> list[dict]:
    with scratch_database() as db:
        rate = _end_to_end(db, rows, threads)
        per_call, writer = _queue_then_write(db, rows)
    return [
        {"name": "prediction log into SQLite, end to end", "value": round(rate),
         "unit": "rows/s", "target": ">= 5000"},
        {"name": "prediction log into SQLite, writer thread alone", "value": round(writer),
         "unit": "rows/s", "target": ">= 5000"},
        {"name": "PredictionLog.record() on the caller's thread, writer idle",
         "value": round(per_call * 1e6, 1), "unit": "us/call", "target": None},
    ]  # fmt: skip
