"""The prediction log: `record()` queues in memory; a daemon thread writes batches.

Where that thread is a greenlet (`aid serve`: gevent patches threading), a batch written on it holds
the event loop for its whole transaction: ~27 ms for 300 rows of 12 KB inputs, twice a second, the
p99 of every call through the hub. So the hub passes `offload`, which runs a write on one native
thread while the loop serves calls (sqlite3 and psycopg let go of the GIL as they work); only for
batches past OFFLOAD_FROM_BYTES of payload: for small rows the two threads' turns at the GIL cost more
than the write (iris at c=16: 2,830 req/s inline, 1,900 offloaded; heavy-onnx p99 77 ms inline, 28
offloaded).

A batch is at most `max_batch` rows or `batch_bytes` of payload, written once either waits (else
every `flush_interval`): image-sized inputs go in pieces of a few MB, not in one long write.

Each batch is ONE transaction: the Prediction rows (multi-row INSERTs sized to the database's
bind-variable limit) and the rollup upserts aggregated from the same rows. A failing write logs
the exception and keeps the rows for the next try; beyond `max_queue` waiting rows the oldest
are dropped with a warning. The thread never dies of a database error.
"""

from __future__ import annotations

import functools
import json
import logging
import secrets
import threading
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

from peewee import Database

from database import connection
from database.connection import rows_per_statement, values_sql
from monitor.rollups import Aggregate
from monitor.tables import Prediction
from vocab.times import utc_naive

log = logging.getLogger(__name__)

CROCKFORD = "0123456789ABCDEFGHJKMNPQRSTVWXYZ"
_PAIRS = [a + b for a in CROCKFORD for b in CROCKFORD]  # 10 bits -> 2 characters
_ENCODER = json.JSONEncoder(ensure_ascii=False, separators=(",", ":"), default=str)
STATUSES = ("ok", "error")
SOURCES = ("hub", "direct", "shadow")  # shadow: a copy of a live call (monitor/shadows.py)
ERROR_CAP = 2000
OFFLOAD_FROM_BYTES = 512 * 1024
# A batch is written once this much payload waits, before `flush_interval`: heavy-onnx at c=16 (16 KB
# a call) queued 13 MB per half second, a ~100 ms write whose turns at the GIL held the hub's loop
# 10-50 ms at a time; in 2 MB writes the same work comes in ~20 ms pieces.
BATCH_BYTES = 2 * 1024 * 1024
_EPOCH = datetime(1970, 1, 1)  # naive UTC: EPOCH + seconds is utc_naive(seconds), cheaper
FIELDS = (
    Prediction.id, Prediction.version_id, Prediction.model, Prediction.version,
    Prediction.created_at, Prediction.latency_ms, Prediction.status, Prediction.error,
    Prediction.source, Prediction.inputs, Prediction.outputs, Prediction.truncated,
)  # fmt: skip
Row = tuple  # values in the order of FIELDS


def new_prediction_id(now: float | None = None) -> str:
    """A 26-char ULID (48-bit milliseconds + 80 random bits, Crockford base32): sorts by time."""
    millis = int((time.time() if now is None else now) * 1000) & (2**48 - 1)
    value = millis << 80 | secrets.randbits(80)
    return "".join([_PAIRS[(value >> shift) & 1023] for shift in range(120, -1, -10)])


@dataclass
class PredictionRecord:
    version_id: int
    model: str
    version: str
    latency_ms: float
    status: str = "ok"  # 'ok' | 'error'
    error: str | None = None
    source: str = "hub"  # 'hub' | 'direct' | 'shadow'
    inputs: Any = None  # JSON-able (or JSONText); encoded and capped by record()
    outputs: Any = None
    truncated: bool = False  # a payload was cut before it got here (JSONText from a model server)
    id: str = field(default_factory=new_prediction_id)
    created_at: datetime | None = None  # UTC (naive = UTC); None: the log's clock at record()


class JSONText(str):
    """A payload already encoded as JSON (by the model server that answered): stored as it is."""


def encode_payload(value: Any, cap: int) -> tuple[str | None, bool]:
    """(JSON text, truncated): a `{"_truncated": true, "bytes": N}` marker past `cap` bytes."""
    if value is None:
        return None, False
    text = value if isinstance(value, JSONText) else _ENCODER.encode(value)
    size = len(text.encode())
    if size <= cap:
        return text, False
    return json.dumps({"_truncated": True, "bytes": size}), True


def _payload_size(row: Row) -> int:
    """The characters of a row's inputs and outputs text."""
    return len(row[9] or "") + len(row[10] or "")


def _clean_error(error: str | None) -> str | None:
    return None if error is None else error[:ERROR_CAP].replace("\x00", "")


def direct_row(version: tuple[int, str, str], pid: str, at: float, latency_ms: float, status: str,
               error: str | None, inputs: str, outputs: str, truncated: bool, cap: int) -> Row:  # fmt: skip
    """The row of a call made straight to a model's server (`version`: id, model, version), its
    payloads JSON text as the server wrote them, capped at `cap` bytes; checked by the caller
    (hub/collector.py). A record without the dataclass: the collector makes thousands a second."""
    if len(inputs) > cap // 4:
        inputs, cut = encode_payload(JSONText(inputs), cap)
        truncated = truncated or cut
    if outputs and len(outputs) > cap // 4:
        outputs, cut = encode_payload(JSONText(outputs), cap)
        truncated = truncated or cut
    return (pid, *version, _EPOCH + timedelta(seconds=at), latency_ms, status, _clean_error(error),
            "direct", inputs, outputs or None, truncated)  # fmt: skip


class PredictionLog:
    def __init__(
        self,
        database: Database,
        flush_interval: float = 0.5,
        max_batch: int = 2000,
        batch_bytes: int = BATCH_BYTES,
        payload_cap: int = 16384,
        clock: Callable[[], float] = time.time,
        max_queue: int = 100_000,
        offload: Callable[[Callable[[], Any]], Any] | None = None,
    ):
        _check_bound(database)
        self.offload = offload or _here
        self.database = database
        self.flush_interval, self.max_batch, self.max_queue = flush_interval, max_batch, max_queue
        self.batch_bytes = batch_bytes
        self._queued_bytes = 0  # the payloads' characters in `_queue`
        self.payload_cap, self.clock = payload_cap, clock
        self.dropped = 0
        self._queue: deque[Row] = deque()
        self._cond = threading.Condition()
        self._accepted = self._settled = self._failures = 0  # settled: written or dropped
        self._flush_wanted = self._stopping = self._failing = False
        self._thread = threading.Thread(target=self._run, name="aidhub-predlog", daemon=True)
        self._thread.start()

    # -- caller side -------------------------------------------------------------------------

    def record(self, rec: PredictionRecord) -> str:
        """Queue one prediction (never touches the database here); returns its id."""
        row = self._row(rec)
        size = _payload_size(row)
        with self._cond:
            self._queue.append(row)
            self._queued_bytes += size
            self._accepted += 1
            self._drop_beyond_bound()
            if self._batch_waits():
                self._cond.notify_all()
        return rec.id

    def flush(self, timeout: float = 30.0) -> bool:
        """Write everything queued so far; True when it is all in the database."""
        if not self._thread.is_alive():
            return self._flush_here()
        with self._cond:
            target, failures = self._accepted, self._failures
            self._flush_wanted = True
            self._cond.notify_all()
            self._cond.wait_for(lambda: self._settled >= target or self._failures != failures, timeout)
            return self._settled >= target

    def write_now(self, records: list[PredictionRecord]) -> None:
        """Write `records` on the calling thread in one transaction, raising when that fails: for a
        caller that must know they are stored (the collector of direct calls, before it acknowledges)."""
        self.write_rows_now([self._row(rec) for rec in records])

    def write_rows_now(self, rows: list[Row]) -> set[str]:
        """`write_now` of rows made by `direct_row`; the ids of those stored now (not stored before)."""
        return self._write(rows)

    def _write(self, rows: list[Row]) -> set[str]:
        """`_transaction(rows)`, through `offload` when their payloads add up to OFFLOAD_FROM_BYTES."""
        if sum(_payload_size(row) for row in rows) < OFFLOAD_FROM_BYTES:
            return self._transaction(rows)
        return self.offload(lambda: self._transaction(rows))

    def _transaction(self, rows: list[Row]) -> set[str]:
        """Write `rows` in one transaction; where that fails, its connection is closed (a broken
        one is not kept) on the thread that holds it, and the error raised."""
        try:
            with self.database.atomic():
                return write_predictions(rows)
        except Exception:
            self._close_connection()
            raise

    def close(self, timeout: float = 30.0) -> bool:
        """Flush and stop the writer thread; True when nothing is left unwritten."""
        with self._cond:
            self._stopping = True
            self._cond.notify_all()
        self._thread.join(timeout)
        if self.queued:
            log.warning("prediction log closed with %d rows unwritten", self.queued)
        return not self.queued

    @property
    def queued(self) -> int:
        """Rows waiting to be written."""
        return len(self._queue)

    def find_pending(self, prediction_id: str) -> dict | None:
        """The queued (not yet written) prediction with this id, as a dict of column values."""
        with self._cond:
            row = next((r for r in self._queue if r[0] == prediction_id), None)
        return None if row is None else {f.name: v for f, v in zip(FIELDS, row, strict=True)}

    def __enter__(self) -> PredictionLog:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def _row(self, rec: PredictionRecord) -> Row:
        if rec.status not in STATUSES or rec.source not in SOURCES:
            raise ValueError(f"status must be one of {STATUSES} and source one of {SOURCES}")
        inputs, cut_in = encode_payload(rec.inputs, self.payload_cap)
        outputs, cut_out = encode_payload(rec.outputs, self.payload_cap)
        at = utc_naive(self.clock() if rec.created_at is None else rec.created_at)
        return (rec.id, rec.version_id, rec.model, rec.version, at, float(rec.latency_ms),
                rec.status, _clean_error(rec.error), rec.source, inputs, outputs,
                cut_in or cut_out or rec.truncated)  # fmt: skip

    def _drop_beyond_bound(self) -> None:
        """Drop the oldest rows past max_queue; call with the lock held."""
        excess = len(self._queue) - self.max_queue
        if excess <= 0:
            return
        for _ in range(excess):
            self._queued_bytes -= _payload_size(self._queue.popleft())
        self.dropped += excess
        self._settled += excess
        if self.dropped == excess or self.dropped % 10_000 < excess:
            log.warning("prediction log full (%d rows waiting): %d rows dropped so far, oldest first",
                        self.max_queue, self.dropped)  # fmt: skip

    # -- writer side -------------------------------------------------------------------------

    def _run(self) -> None:
        try:
            while True:
                stopping = self._wait_for_work()
                self._write_all()
                if stopping:
                    return
        finally:
            self._close_connection()
            self.offload(self._close_connection)

    def _wait_for_work(self) -> bool:
        def ready() -> bool:
            return self._stopping or self._flush_wanted or (self._batch_waits() and not self._failing)

        with self._cond:
            self._cond.wait_for(ready, self.flush_interval)
            self._flush_wanted = False
            return self._stopping

    def _write_all(self) -> None:
        """Write batches until the queue is empty or a write fails."""
        while batch := self._take():
            if not self._write_settled(batch):
                return

    def _batch_waits(self) -> bool:
        """Whether a whole batch is queued (call with the lock held)."""
        return len(self._queue) >= self.max_batch or self._queued_bytes >= self.batch_bytes

    def _take(self) -> list[Row]:
        """The oldest rows: `max_batch` of them at most, within `batch_bytes` of payload (one at least)."""
        with self._cond:
            batch = [self._queue.popleft() for _ in range(min(len(self._queue), self.max_batch))]
            size = sum(map(_payload_size, batch))
            while size > self.batch_bytes and len(batch) > 1:  # image-sized payloads: give some back
                self._queue.appendleft(batch.pop())
                size -= _payload_size(self._queue[0])
            self._queued_bytes -= size
            return batch

    def _write_settled(self, batch: list[Row]) -> bool:
        ok = self._write_batch(batch)
        with self._cond:
            if ok:
                self._settled += len(batch)
            else:
                self._queue.extendleft(reversed(batch))
                self._queued_bytes += sum(_payload_size(row) for row in batch)
                self._failures += 1
                self._drop_beyond_bound()
            self._cond.notify_all()
        return ok

    def _write_batch(self, batch: list[Row]) -> bool:
        try:
            self._write(batch)
        except Exception:
            self._note_failure(len(batch))
            return False
        if self._failing:
            log.info("prediction log writes again after a failure")
        self._failing = False
        return True

    def _note_failure(self, rows: int) -> None:
        if self._failing:
            log.debug("prediction log write failed again; %d rows kept", rows, exc_info=True)
        else:
            log.exception("prediction log write failed; %d rows kept for the next try", rows)
        self._failing = True

    def _flush_here(self) -> bool:
        """Write on the calling thread (after close()), opening and closing a connection."""
        opened = self.database.is_closed()
        try:
            self._write_all()
        finally:
            if opened:
                self._close_connection()
        return not self.queued

    def _close_connection(self) -> None:
        try:
            if not self.database.is_closed():
                self.database.close()
        except Exception:
            log.debug("closing the prediction log's connection failed", exc_info=True)


@functools.lru_cache(maxsize=8)
def _insert_sql(param: str, rows: int) -> str:
    """Multi-row INSERT of Prediction rows; built by hand because peewee's per-value SQL
    generation costs ~10x the database's own time. Ids already stored are ignored; the ids
    actually inserted come back (RETURNING: SQLite >= 3.35 and PostgreSQL)."""
    columns = ", ".join(f'"{f.column_name}"' for f in FIELDS)
    values = values_sql(param, len(FIELDS), rows)
    table = Prediction._meta.table_name
    return f'INSERT INTO "{table}" ({columns}) VALUES {values} ON CONFLICT ("id") DO NOTHING RETURNING "id"'


def write_predictions(batch: list[Row]) -> set[str]:
    """Insert the rows and add those inserted to the rollups (a row whose id is already stored,
    e.g. a batch sent again, counts once); call inside a transaction. Shadow calls stay out of the
    rollups: a version's scorecard counts the calls it answered live (monitor/shadows.py). Returns
    the ids inserted."""
    db = connection.database.obj
    size = rows_per_statement(len(FIELDS))
    aggregate, stored = Aggregate(), set()
    for start in range(0, len(batch), size):
        chunk = batch[start : start + size]
        params = [value for row in chunk for value in row]
        inserted = {found for (found,) in db.execute_sql(_insert_sql(db.param, len(chunk)), params)}
        stored |= inserted
        for row in chunk:
            if row[0] in inserted and row[8] != "shadow":
                inserted.discard(row[0])  # an id twice in one batch: its first row is the one stored
                aggregate.add_prediction(row[1], row[4], row[5], row[6] == "ok", direct=row[8] == "direct")
    aggregate.save()
    return stored


def _here(work: Callable[[], Any]) -> Any:
    return work()


def _check_bound(database: Database) -> None:
    if database is not connection.database and connection.database.obj is not database:
        raise ValueError(
            "database.connection.database is not bound to this database: call "
            "database.connection.database.initialize(db) with the same db before PredictionLog(db)."
        )
