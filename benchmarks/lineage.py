"""The Lineage section's cost: `Hub.lineage` (every version's all-time numbers, its snapshots, the tree)
and one version's JSON with its `parent`/`children`/`trained_on`, for a model of `versions` versions
each retrained from the one before (the deepest tree), each with `calls` logged predictions.

A fresh hub on SQLite in a temp folder (no background threads: nothing else writes). Milliseconds, the
best of `repeat` runs.

    .venv/bin/python -m benchmarks lineage
"""

from __future__ import annotations

import tempfile
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path


def run(versions: int = 100, calls: int = 20, repeat: int = 3) -> list[dict]:
    from benchmarks.serving import row
    from hub.config import Config
    from hub.hub import Hub
    from tests.hubserver import cache_env

    with tempfile.TemporaryDirectory() as folder:
        home = Path(folder)
        env = {**cache_env(), "AIDHUB_RUNNER": "process", "AIDHUB_DATABASE_URL": f"sqlite:///{home}/hub.db"}
        hub = Hub(Config.load(env=env, home=home / "home"), background=False)
        try:
            _fill(hub, home, versions, calls)
            lineage = _best(lambda: hub.lineage("demo-adder"), repeat)
            version = _best(lambda: hub.version("demo-adder", "1.0.0"), repeat)
        finally:
            hub.close()
    at = f"{versions} versions in a chain, {calls} calls each"
    return [
        row(f"lineage section (Hub.lineage), {at}", lineage, "ms"),
        row(f"one version's JSON with its lineage, {at}", version, "ms"),
    ]


def _fill(hub, home: Path, versions: int, calls: int) -> None:
    from monitor.predlog import PredictionRecord
    from tests.demo_package import write_package
    from tests.packages import archive

    for i in range(versions):
        parent = {"parent": f"1.{i - 1}.0"} if i else {}
        hub.publish(archive(write_package(home / f"p{i}", version=f"1.{i}.0", **parent)))
    at = datetime.now(UTC) - timedelta(hours=1)
    for i in range(versions):
        v = hub.catalog.resolve("demo-adder", f"1.{i}.0")
        for _ in range(calls):
            record = PredictionRecord(v.id, "demo-adder", v.version, 1.5, inputs={"x": [[1.0, 2.0]]},
                                      outputs={"y": [[2.0, 3.0]]}, created_at=at)  # fmt: skip
            hub.predlog.record(record)
    hub.predlog.flush()


def _best(call, repeat: int) -> float:
    times = []
    for _ in range(repeat):
        started = time.perf_counter()
        call()
        times.append((time.perf_counter() - started) * 1000)
    return round(min(times), 1)
