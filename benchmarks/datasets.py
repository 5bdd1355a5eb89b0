"""Export of 1,000,000 predictions to Parquet: time and peak memory (streamed: memory flat).

`run()` fills a fresh hub (SQLite, the demo package `demo-adder`: x float32[-1, 2] -> y likewise) with
`rows` predictions, one in ten with a labelled feedback, the last tenth within the last day. Each export
runs through `Hub.export_dataset` in a fresh process (spawn), whose export child
(monitor/datasetexport.py) is measured with `resource.getrusage(RUSAGE_CHILDREN)`: once for the last
tenth (`since 1d`) and once for all rows. Streamed means the whole export peaks about as high as the
tenth's.

    .venv/bin/python -c "from benchmarks.datasets import run; print(run())"
"""

from __future__ import annotations

import json
import multiprocessing
import resource
import tempfile
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

from benchmarks.serving import row

ROWS = 1_000_000
BATCH = 20_000


def peak_rss_mb(who: int = resource.RUSAGE_SELF) -> float:
    return resource.getrusage(who).ru_maxrss / 1024  # kB on Linux


def open_hub(home: Path):
    from hub.config import Config
    from hub.hub import Hub
    from tests.hubserver import cache_env

    env = {**cache_env(), "AIDHUB_RUNNER": "process", "AIDHUB_DATABASE_URL": f"sqlite:///{home}/hub.db"}
    return Hub(Config.load(env=env, home=home), background=False)


def fill(home: Path, rows: int) -> None:
    """Publish demo-adder and write `rows` predictions (and a feedback on every tenth) straight to SQL."""
    from monitor.predlog import new_prediction_id
    from tests.demo_package import write_package
    from tests.packages import archive

    hub = open_hub(home)
    try:
        hub.publish(archive(write_package(home.parent / "pkg")))
        version = hub.catalog.resolve("demo-adder", "1.0.0")
        start = datetime.now(UTC).replace(tzinfo=None) - timedelta(days=10)
        recent = rows - rows // 10
        conn = hub.db.connection()
        conn.execute("PRAGMA synchronous = OFF")  # setup only: the export is what is measured
        for first in range(0, rows, BATCH):
            _insert(
                conn, version.id, start, recent, range(first, min(first + BATCH, rows)), new_prediction_id
            )
    finally:
        hub.close()


def _insert(conn, version_id: int, start: datetime, recent: int, numbers: range, new_id) -> None:
    predictions, feedback = [], []
    for i in numbers:
        at = (
            start + timedelta(days=9, hours=1, seconds=i - recent)
            if i >= recent
            else start + timedelta(seconds=i / 2)
        )
        pid = new_id(at.replace(tzinfo=UTC).timestamp())
        x = [round(i * 0.001, 3), float(i % 7)]
        inputs, outputs = json.dumps({"x": [x]}), json.dumps({"y": [[x[0] + 1, x[1] + 1]]})
        predictions.append((pid, version_id, "demo-adder", "1.0.0", at, 1.0, "ok", "hub", inputs, outputs, 0))
        if i % 10 == 0:
            feedback.append((pid, version_id, "demo-adder", f"class-{i % 3}", at))
    with conn:
        conn.executemany(
            "INSERT INTO monitor_prediction (id, version_id, model, version, created_at, latency_ms, status, "
            "source, inputs, outputs, truncated) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
            predictions,
        )
        conn.executemany(
            "INSERT INTO monitor_feedback (prediction_id, version_id, model, label, created_at, client) "
            "VALUES (?, ?, ?, ?, ?, '')",
            feedback,
        )


def export(home: str, since: str | None) -> dict:
    """In a fresh process: open the hub, export to Parquet; the time, the peak RSS of the export's own
    process (monitor/datasetexport.py, the only child waited for) and of this one, the hub's."""
    hub = open_hub(Path(home))
    try:
        started = time.perf_counter()
        snapshot, _ = hub.export_dataset("demo-adder", since=since, fmt="parquet")
        seconds = time.perf_counter() - started
        return {"seconds": seconds, "peak_mb": peak_rss_mb(resource.RUSAGE_CHILDREN), "hub_mb": peak_rss_mb(),
                "rows": snapshot["rows"], "bytes": snapshot["size"]}  # fmt: skip
    finally:
        hub.close()


def run(rows: int = ROWS) -> list[dict]:
    with tempfile.TemporaryDirectory(prefix="aidhub-bench-datasets-") as tmp:
        home = Path(tmp) / "home"
        started = time.perf_counter()
        fill(home, rows)
        filled = time.perf_counter() - started
        with multiprocessing.get_context("spawn").Pool(1, maxtasksperchild=1) as pool:
            tenth = pool.apply(export, (str(home), "1d"))
        with multiprocessing.get_context("spawn").Pool(1, maxtasksperchild=1) as pool:
            whole = pool.apply(export, (str(home), None))
    return [
        row(f"dataset export: {whole['rows']:,} predictions to Parquet", round(whole["seconds"], 2), "s"),
        row("dataset export: rows per second", round(whole["rows"] / whole["seconds"]), "rows/s"),
        row("dataset export: Parquet file", round(whole["bytes"] / 1024**2, 1), "MiB"),
        row("dataset export: peak RSS of the export process, all rows", round(whole["peak_mb"], 1), "MiB",
            "flat: about the tenth's"),
        row(f"dataset export: peak RSS of the export process, {tenth['rows']:,} rows",
            round(tenth["peak_mb"], 1), "MiB"),
        row("dataset export: peak RSS of the hub's process, all rows", round(whole["hub_mb"], 1), "MiB"),
        row("dataset export: filling the log (setup)", round(filled, 1), "s"),
    ]  # fmt: skip


if __name__ == "__main__":
    import sys

    for line in run(int(sys.argv[1]) if len(sys.argv) > 1 else ROWS):
        print(line)
