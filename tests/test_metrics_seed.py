"""A restarted hub continues its latency histogram (buckets, count, sum) from the latency rollups, as
it does its counters, and only once: in one process, and with two web workers and their supervisor
(prometheus_client's multiprocess mode, where every process's values are summed)."""

from __future__ import annotations

import re
import sqlite3
from collections import Counter
from itertools import accumulate
from pathlib import Path

import httpx
import pytest
from prometheus_client.utils import floatToGoString

from monitor.metrics import LATENCY_BUCKETS_S, latency_counts
from monitor.rollups import bucket_of
from tests.hubserver import HubProcess
from tests.packages import onnx_package

pytestmark = pytest.mark.slow
CALL = {"inputs": {"x": [[1.0, 2.0]]}}
LATENCY = "aidhub_prediction_latency_seconds"


def histogram(hub: HubProcess) -> dict[str, float]:
    """doubler@1.0.0's latency histogram from /metrics: calls at or under each `le`, 'count', 'sum'."""
    found = {}
    for line in httpx.get(f"{hub.url}/metrics").text.splitlines():
        name, _, value = line.rpartition(" ")
        if not name.startswith(LATENCY) or 'model="doubler"' not in name:
            continue
        if name.startswith(f"{LATENCY}_bucket"):
            found[re.search(r'le="([^"]+)"', name).group(1)] = float(value)
        elif name.startswith((f"{LATENCY}_count", f"{LATENCY}_sum")):
            found[name.split("{")[0].rsplit("_", 1)[1]] = float(value)
    return found


def from_log(home: Path) -> tuple[dict[str, float], float]:
    """(calls at or under each `le`, sum of seconds) that the logged calls' latency rollups give."""
    with sqlite3.connect(home / "hub.db") as db:
        query = "SELECT latency_ms FROM monitor_prediction WHERE model = 'doubler'"
        latencies = [ms for (ms,) in db.execute(query)]
    bounds = [floatToGoString(b) for b in LATENCY_BUCKETS_S] + ["+Inf"]
    cumulative = accumulate(latency_counts(Counter(bucket_of(ms) for ms in latencies)))
    return dict(zip(bounds, map(float, cumulative), strict=True)), sum(latencies) / 1000


def predict(hub: HubProcess, calls: int) -> None:
    for _ in range(calls):
        assert httpx.post(f"{hub.url}/api/v1/models/doubler/predict", json=CALL).status_code == 200


@pytest.mark.parametrize("workers", [1, 2])
def test_a_restarted_hub_continues_its_latency_histogram_from_the_rollups_once(tmp_path, workers):
    hub = HubProcess(tmp_path / "home", workers=workers).start()
    again = None
    try:
        assert hub.aid("publish", str(onnx_package(tmp_path / "pkg")), "--deploy").returncode == 0
        predict(hub, 12)
        before = histogram(hub)
        assert (before["count"], before["+Inf"]) == (12, 12)
        hub.stop()  # the prediction log is flushed on the way out; the server runs on
        again = HubProcess(tmp_path / "home", workers=workers).start()
        seeded = histogram(again)
        expected, seconds = from_log(hub.home)
        assert {le: seeded[le] for le in expected} == expected  # seeded once, not once per process
        assert seeded["count"] == 12 and abs(seeded["sum"] - seconds) < 1e-9
        assert abs(seeded["sum"] - before["sum"]) < 1e-6  # the rollups' sum is the one observed
        predict(again, 4)
        after = histogram(again)
        assert (after["count"], after["+Inf"]) == (16, 16) and after["sum"] > seeded["sum"]
    finally:
        for server in (again, hub):
            if server and server.proc.poll() is None:
                server.undeploy_all()
                server.stop()
