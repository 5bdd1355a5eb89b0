"""Calls made straight to a model's endpoint, brought into the prediction log.

Each serving version's server keeps a record of every call that did not come through the hub
(runners/flavors/calls.py). Every second the hub fetches those records from each server, stores
them (source "direct") in one transaction, and only then acknowledges them, on its next fetch. So
nothing is lost while the hub is down or the database is away: the server holds the records until
they are stored (up to its bound, beyond which it counts what it dropped), and a record fetched
twice is stored once, by its id. A server that does not answer is tried again with backoff.
"""

from __future__ import annotations

import json
import logging
import os
import re
import secrets
import threading
import time
from collections.abc import Callable
from pathlib import Path

from hub.errors import ModelFailed
from hub.periodic import Periodic
from hub.serving import ModelClient
from monitor.metrics import Metrics
from monitor.predlog import STATUSES, JSONText, PredictionLog, PredictionRecord
from registry.models import DeploymentRow, ModelRow, VersionRow
from runners.flavors.calls import parse_reply
from vocab.states import DeploymentStatus

log = logging.getLogger(__name__)
TOKEN_FILE = "report-token"
BATCH = 5000
MAX_BATCHES = 20  # per server per round: one busy server does not hold up the others
MAX_BACKOFF_S = 60.0
_ID = re.compile(r"[0-9A-HJKMNP-TV-Z]{26}")


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
        self.lock = threading.Lock()  # one collection at a time: the loop's, or one asked for

    def run_once(self) -> int:
        return self.collect()

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
            except (ModelFailed, ValueError, KeyError, TypeError) as e:  # a reply that does not parse too
                self._failed(url, e)
                return stored
            self.failures.pop(url, None)
            self._store(version, calls)
            acks[worker] = last
            self.dropped.setdefault(url, {})[worker] = dropped
            stored += len(calls)
            if len(calls) < BATCH:
                break
        return stored

    def _store(self, version: VersionRow, calls: list[dict]) -> None:
        records = [r for r in (record_of(version, call) for call in calls) if r is not None]
        if len(records) < len(calls):
            log.warning("%d malformed direct-call records from %s@%s were skipped",
                        len(calls) - len(records), version.model.name, version.version)  # fmt: skip
        if records:
            self.predlog.write_now(records)
        calls = [(rec.status, rec.latency_ms) for rec in records]
        self.metrics.observe_predictions(version.model.name, version.version, "direct", calls)

    def _failed(self, url: str, error: Exception) -> None:
        failures = self.failures[url] = self.failures.get(url, 0) + 1
        delay = min(MAX_BACKOFF_S, 2.0 ** (failures - 1))
        self.next_try[url] = self.clock() + delay
        level = logging.WARNING if failures in (1, 5) else logging.DEBUG
        log.log(level, "Collecting direct calls from %s failed (%d in a row; next try in %.0f s): %s",
                url, failures, delay, error)  # fmt: skip


def record_of(version: VersionRow, call: dict[str, str]) -> PredictionRecord | None:
    """The log record of one call a server reported (runners.flavors.calls.FIELDS, as text); None
    when the record is malformed. The payloads are stored as the server wrote them."""
    try:
        at, latency_ms, error = float(call["at"]), float(call["latency_ms"]), call["error"]
        if not _ID.fullmatch(call["id"]) or call["status"] not in STATUSES or not call["inputs"]:
            return None
        if not (0 <= latency_ms < 1e9 and abs(at - time.time()) < 366 * 86400):
            return None
        return PredictionRecord(
            id=call["id"], version_id=version.id, model=version.model.name, version=version.version,
            latency_ms=latency_ms, status=call["status"], error=str(json.loads(error)) if error else None,
            source="direct", inputs=JSONText(call["inputs"]), outputs=JSONText(call["outputs"]) or None,
            created_at=at, truncated=call["truncated"] == "1",
        )  # fmt: skip
    except (KeyError, TypeError, ValueError):
        return None
