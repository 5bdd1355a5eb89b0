"""What differs when the hub runs as several processes (`aid serve --workers N`, cli/serve.py): one
supervisor owns the model servers and the background loops; web workers serve requests.

A change of where calls go, made in any process, clears every process's route cache. A web worker
finds a prediction another worker served once that worker's log wrote it, and does not count the
direct calls it collects (the supervisor counts them)."""

from __future__ import annotations

import os
import time
from collections.abc import Callable
from pathlib import Path

from hub.collector import Collector
from hub.config import Config
from hub.routes import Routes, Split
from hub.serving import ModelClient
from monitor import feedback as feedback_store
from monitor.metrics import Metrics
from monitor.predlog import CROCKFORD, PredictionLog

POLL_S = 0.05
ROUTES_STAMP = "routes-changed"  # in the home


def routes_for(config: Config) -> Routes:
    """This process's route cache; shared (below) when several processes serve the hub, which is
    exactly when `aid serve --workers N` turned prometheus_client's multiprocess mode on."""
    return SharedRoutes(config.home / ROUTES_STAMP) if config.metrics_dir else Routes()


def collector_for(background: bool, client: ModelClient, predlog: PredictionLog, metrics: Metrics):
    """The collector of direct calls of a hub that runs background work, else a web worker's."""
    return Collector(client, predlog, metrics) if background else WebWorkerCollector(client, predlog, metrics)


class SharedRoutes(Routes):
    """The route cache of one of several hub processes. `clear()` (after a deploy, an undeploy, an
    alias moved, a server restarted: in whichever process) also stamps a file in the home; every
    lookup stats that file (a few microseconds) and starts afresh when another process stamped it."""

    def __init__(self, marker: Path, **kwargs) -> None:
        super().__init__(**kwargs)
        self.marker = marker
        marker.touch(exist_ok=True)
        self.seen = self._stamp()

    def get(self, key: tuple[str, str | None], load: Callable) -> Split:
        stamp = self._stamp()
        if stamp != self.seen:
            self.seen = stamp
            super().clear()
        return super().get(key, load)

    def clear(self) -> None:
        super().clear()
        now = time.time_ns()
        os.utime(self.marker, ns=(now, now))

    def _stamp(self) -> int:
        try:
            return os.stat(self.marker).st_mtime_ns
        except FileNotFoundError:  # the home's file removed under the hub: nothing to compare with
            return 0


class WebWorkerCollector(Collector):
    """A web worker collects only when asked (before an undeploy, for feedback on a direct call): it
    stores and counts what the servers hold but does not acknowledge it. The supervisor's collector,
    every second, does both; each process counts only the calls it stored first (the prediction log
    keeps a record stored twice once), and Prometheus sums the processes' counters."""

    def collect(self) -> int:
        stored = super().collect()
        self.acks.clear()  # the records stay on the server until the supervisor acknowledges them
        return stored


def wait_for_prediction(prediction_id: str, flush_seconds: float):
    """The prediction's row once another worker's log wrote it (within that log's flush interval and
    a second of slack after the call); None when it was not served that recently."""
    deadline = served_at(prediction_id) + flush_seconds + 1.0
    while time.time() < deadline:
        time.sleep(POLL_S)  # gevent's sleep in a web worker: the other requests go on
        row = feedback_store.find_prediction(prediction_id)
        if row is not None:
            return row
    return None


def served_at(prediction_id: str) -> float:
    """When a prediction id was made: the bits above its 80 random ones are milliseconds (a ULID,
    monitor/predlog.py); 0 for text that is not one."""
    if len(prediction_id) != 26:
        return 0.0
    value = 0
    for char in prediction_id.upper():
        if char not in CROCKFORD:
            return 0.0
        value = value * 32 + CROCKFORD.index(char)
    return (value >> 80) / 1000.0
