"""Calls made straight to a model's endpoint, brought into the prediction log.

Each serving version's server keeps a record of every call that did not come through the hub
(runners/flavors/calls.py). Every second (every BUSY_INTERVAL_S under load) the hub fetches those
records from each server, stores them (source "direct") in one transaction, and only then
acknowledges them, on its next fetch. So nothing is lost while the hub is down or the database is
away: the server holds the records until they are stored (up to its bound, beyond which it counts
what it dropped), and a record fetched twice is stored once, by its id. A server that does not
answer is tried again with backoff.

A record costs the hub ~12 us of CPU (`python -m benchmarks directcost`), about a third of it the
database's insert and a third taking the inputs out of the request's body (the server keeps the body
as it came: re-encoding the inputs there cost each call more than this costs here). The records are
split out of the reply's columns (`parse_reply`), checked and become log rows directly (`row_of`, no
dataclass), one multi-row INSERT and one rollup upsert per batch.
"""

from __future__ import annotations

import json
import logging
import os
import secrets
import threading
import time
from collections.abc import Callable
from pathlib import Path

from hub.errors import ModelFailed
from hub.periodic import Periodic
from hub.serving import ModelClient
from monitor.metrics import Metrics
from monitor.predlog import CROCKFORD, STATUSES, PredictionLog, Row, direct_row
from registry.models import DeploymentRow, ModelRow, VersionRow
from runners.flavors.calls import REPLY_FORMAT, encode, parse_reply
from vocab.states import DeploymentStatus

log = logging.getLogger(__name__)
TOKEN_FILE = "report-token"
BATCH = 5000
MAX_BATCHES = 20  # per server per round: one busy server does not hold up the others
MAX_BACKOFF_S = 60.0
BUSY_RECORDS, BUSY_INTERVAL_S = 1000, 2.0  # a round that brings this many: the next one comes later
MAX_AGE_S = 366 * 86400  # a record stamped further from now is malformed


def report_token(home: Path) -> str:
    """The secret the hub's servers know it by, made once per home (readable by its owner only)."""
    path = Path(home) / TOKEN_FILE
    path.parent.mkdir(parents=True, exist_ok=True)
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    except FileExistsError:
        return path.read_text().strip()
    with os.fdopen(fd, "w") as f:
        f.write(secrets.token_urlsafe(32))
    return path.read_text().strip()


class Collector(Periodic):
    name = "collector"
    failure = "Collecting direct calls failed; the servers keep them for the next try"
    interval = 1.0

    def __init__(self, client: ModelClient, predlog: PredictionLog, metrics: Metrics,
                 clock: Callable[[], float] = time.monotonic):  # fmt: skip
        super().__init__()
        self.client, self.predlog, self.metrics, self.clock = client, predlog, metrics, clock
        self.acks: dict[str, dict[str, int]] = {}  # server url -> {worker: last record stored}
        self.dropped: dict[str, dict[str, int]] = {}  # server url -> {worker: records it dropped}
        self.failures: dict[str, int] = {}
        self.next_try: dict[str, float] = {}
        self.next_round = 0.0  # the loop's next round (run_once) is not before this
        self.lock = threading.Lock()  # one collection at a time: the loop's, or one asked for

    def run_once(self) -> int:
        """A round of the loop: every second, or every BUSY_INTERVAL_S while a round brings
        BUSY_RECORDS or more (fewer, larger batches under load: each costs ~2 ms besides its records).
        A caller that needs the calls now (feedback on an id not yet seen) calls `collect`."""
        if self.clock() < self.next_round:
            return 0
        stored = self.collect()
        busy = stored >= BUSY_RECORDS  # the loop comes back every `interval`: skip those before the next
        self.next_round = self.clock() + (BUSY_INTERVAL_S - self.interval / 2 if busy else 0.0)
        return stored

    def collect(self) -> int:
        """Fetch and store the direct calls every serving version holds now; how many were stored."""
        with self.lock:
            query = DeploymentRow.select(DeploymentRow, VersionRow, ModelRow).join(VersionRow).join(ModelRow)
            rows = list(query.where(DeploymentRow.status == DeploymentStatus.READY, DeploymentRow.url != ""))
            return sum(self._collect_from(row.url, row.version) for row in rows)

    def dropped_total(self) -> int:
        """Direct calls the servers dropped (their buffer was full) since they started."""
        return sum(sum(workers.values()) for workers in self.dropped.values())

    def _collect_from(self, url: str, version: VersionRow) -> int:
        if self.clock() < self.next_try.get(url, 0.0):
            return 0
        stored = 0
        for _ in range(MAX_BATCHES):
            acks = self.acks.setdefault(url, {})
            try:
                head, calls = parse_reply(self.client.direct_calls(url, acks, BATCH))
                worker, last, dropped = str(head["worker"]), int(head["last"]), int(head["dropped"])
                reply_format = int(head.get("format", 1))
            except (ModelFailed, ValueError, KeyError, TypeError) as e:  # a reply that does not parse too
                self._failed(url, e)
                return stored
            self.failures.pop(url, None)
            self._store(version, calls, reply_format)
            acks[worker] = last
            self.dropped.setdefault(url, {})[worker] = dropped
            stored += len(calls)
            if int(head.get("waiting", 0)) <= len(calls):  # a reply holds BATCH records or 2 MiB
                break
        return stored

    def _store(self, version: VersionRow, calls: list[list], reply_format: int) -> None:
        key, now = (version.id, version.model.name, version.version), time.time()
        rows = [
            row
            for fields in calls
            if (row := row_of(key, fields, now, self.predlog.payload_cap, reply_format))
        ]
        if len(rows) < len(calls):
            log.warning("%d malformed direct-call records from %s@%s were skipped",
                        len(calls) - len(rows), version.model.name, version.version)  # fmt: skip
        stored = self.predlog.write_rows_now(rows) if rows else set()
        # Counted once: a record sent again (its acknowledgement lost with a restarted hub) is not new.
        observed = [(row[6], row[5]) for row in rows if row[0] in stored]  # status, latency_ms
        self.metrics.observe_predictions(version.model.name, version.version, "direct", observed)

    def _failed(self, url: str, error: Exception) -> None:
        failures = self.failures[url] = self.failures.get(url, 0) + 1
        delay = min(MAX_BACKOFF_S, 2.0 ** (failures - 1))
        self.next_try[url] = self.clock() + delay
        level = logging.WARNING if failures in (1, 5) else logging.DEBUG
        log.log(level, "Collecting direct calls from %s failed (%d in a row; next try in %.0f s): %s",
                url, failures, delay, error)  # fmt: skip


def row_of(version: tuple[int, str, str], fields: list[str], now: float, cap: int,
           reply_format: int = REPLY_FORMAT) -> Row | None:  # fmt: skip
    """The log row of one call a server reported (runners.flavors.calls.FIELDS, as `parse_reply`
    gives them), or None when the record is malformed. The outputs are stored as the server wrote
    them, the inputs as the request's body held them (`reply_format` 1, from older servers: as
    written); both capped."""
    try:
        pid, at_text, latency_text, status, truncated, error, outputs, inputs = fields
        at, latency_ms = float(at_text), float(latency_text)
        error = str(json.loads(error)) if error else None
        if reply_format >= 2:
            inputs = _inputs_of(inputs)
    except (TypeError, ValueError, RecursionError):  # too few fields, not numbers, JSON that does not parse
        return None
    if len(pid) != 26 or pid.strip(CROCKFORD) or status not in STATUSES or not inputs:
        return None  # strip: what is left of the id past the ULID alphabet
    if not (0 <= latency_ms < 1e9 and abs(at - now) < MAX_AGE_S) or "\x00" in inputs or "\x00" in outputs:
        return None  # NUL: PostgreSQL refuses it in text (JSON would have escaped it)
    return direct_row(version, pid, at, latency_ms, status, error, inputs, outputs, truncated == "1", cap)


def _inputs_of(body: str) -> str:
    """The inputs of a request's body {"inputs": ...} as compact JSON; a marker for a body past the
    server's cap as it is; ValueError for anything else."""
    value = json.loads(body)
    if isinstance(value, dict) and "inputs" in value:
        return encode(value["inputs"])  # compact, as the servers write JSON
    if isinstance(value, dict) and value.get("_truncated") is True:
        return body
    raise ValueError("a request body without inputs")
