"""Drift runs: the child process alone on a 20-column table (10,000 rows against 5,000), with and without
the HTML report, and the hub's predict latency while a drift run of the served version goes on."""

from __future__ import annotations

import csv
import json
import random
import shutil
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import httpx

from benchmarks.load import UNLIMITED, post_load
from benchmarks.serving import row
from tests.hubserver import REPO, HubProcess

COLUMNS, CURRENT, REFERENCE = 20, 10_000, 5_000
IRIS = REPO / "examples" / "iris-onnx"
SECONDS = 10


def _job(html: bool) -> dict:
    rng = random.Random(7)
    schema = {"x": {"dtype": "float32", "shape": [-1, COLUMNS]}}

    def rows(count: int, shift: float) -> list[dict]:
        return [
            {"x": [[rng.gauss(shift if i < 4 else 0.0, 1.0) for i in range(COLUMNS)]]} for _ in range(count)
        ]

    return {
        "reference_inputs": rows(REFERENCE, 0.0), "current_inputs": rows(CURRENT, 0.5),
        "reference_outputs": [], "current_outputs": [], "inputs": schema, "outputs": {}, "labels": [],
        "min_rows": 30, "html": html,
    }  # fmt: skip


def _worker_seconds(html: bool) -> tuple[float, float]:
    """(first, second) wall time of the job through one `python -m monitor.driftworker --serve`: the
    first run pays Evidently's import, the second is what the hub's kept-up worker takes."""
    with tempfile.TemporaryDirectory(prefix="aidhub-bench-drift-") as folder:
        job = Path(folder) / "job.json"
        job.write_text(json.dumps(_job(html)))
        command = [sys.executable, "-m", "monitor.driftworker", "--serve"]
        worker = subprocess.Popen(command, stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
        times = []
        for _ in range(2):
            began = time.monotonic()
            worker.stdin.write(json.dumps({"job": str(job), "out": folder}) + "\n")
            worker.stdin.flush()
            assert json.loads(worker.stdout.readline()) == {"ok": True}
            times.append(time.monotonic() - began)
        worker.stdin.close()
        worker.wait()
        result = json.loads((Path(folder) / "result.json").read_text())["inputs"]
        assert [c["column"] for c in result["columns"] if c["drifted"]] == [f"x.{i}" for i in range(4)]
        return times[0], times[1]


def _reference_rows() -> list[list[float]]:
    with (IRIS / "reference.csv").open(newline="") as f:
        return [[float(r[f"features.{i}"]) for i in range(4)] for r in csv.DictReader(f)]


def _p50_during_drift(hub: HubProcess) -> tuple[float, float, float]:
    """(p50 idle, p50 while drift runs, drift run seconds) of hub predict at concurrency 4."""
    url, body = f"{hub.url}/api/v1/models/iris-onnx/predict", {"inputs": {"features": [_reference_rows()[0]]}}
    for features in _reference_rows():
        httpx.post(url, json={"inputs": {"features": [features]}}).raise_for_status()
    idle = post_load(url, body, SECONDS, concurrency=4)["p50_ms"]
    assert hub.aid("drift", "iris-onnx", "--json", timeout=300).returncode == 0  # starts the worker
    took: list[float] = []

    def drift_runs() -> None:
        began = time.monotonic()
        while time.monotonic() - began < SECONDS:
            started = time.monotonic()
            assert hub.aid("drift", "iris-onnx", "--json", timeout=300).returncode == 0
            took.append(time.monotonic() - started)

    runner = threading.Thread(target=drift_runs)
    runner.start()
    busy = post_load(url, body, SECONDS, concurrency=4)["p50_ms"]
    runner.join()
    return idle, busy, sum(took) / len(took)


def run() -> list[dict]:
    cold, warm = _worker_seconds(False)
    _, with_report = _worker_seconds(True)
    rows = [
        row("drift run, 20 cols x 10k vs 5k, worker kept up", warm, "s", "<= 3"),
        row("drift run, same, with the HTML report", with_report, "s"),
        row("drift run, same, worker just started (Evidently import)", cold, "s"),
    ]
    hub = HubProcess(Path(tempfile.mkdtemp(prefix="aidhub-bench-")), extra_env=UNLIMITED).start()
    try:
        assert hub.aid("publish", str(IRIS), "--deploy").returncode == 0
        idle, busy, seconds = _p50_during_drift(hub)
    finally:
        hub.undeploy_all()
        hub.stop()
        shutil.rmtree(hub.home, ignore_errors=True)
    return [
        *rows,
        row("drift run through the hub and aid (iris, 112 calls), worker up", seconds, "s"),
        row("predict p50 at c=4, idle / during drift runs", f"{idle:.1f} / {busy:.1f}", "ms"),
    ]
