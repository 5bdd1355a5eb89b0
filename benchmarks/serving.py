"""Hub-proxied predict vs the same version's BentoML endpoint called directly, and redeploy time."""

from __future__ import annotations

import json
import shutil
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import httpx

from benchmarks.load import UNLIMITED, post_load
from tests.hubserver import REPO, HubProcess

MODEL = "iris-onnx"
SECONDS = 15
ROUNDS = 3


def _example() -> dict:
    return json.loads((REPO / "examples" / MODEL / "examples.json").read_text())[0]["inputs"]


def _endpoint(hub: HubProcess) -> str:
    version = httpx.get(f"{hub.url}/api/v1/models/{MODEL}/versions/1.0.0").json()
    return version["deployment"]["url"]


def _proxy_rows(hub: HubProcess) -> list[dict]:
    body = {"inputs": _example()}
    post_load(f"{hub.url}/api/v1/models/{MODEL}/predict", body, 5)  # warm both paths
    direct_url, hub_url = f"{_endpoint(hub)}/predict", f"{hub.url}/api/v1/models/{MODEL}/predict"
    direct, proxied = _alternating(direct_url, hub_url, body)
    ratio = proxied["rps"] / direct["rps"]
    added = proxied["p50_ms"] - direct["p50_ms"]
    direct_1 = post_load(f"{_endpoint(hub)}/predict", body, 10, concurrency=1)
    proxied_1 = post_load(f"{hub.url}/api/v1/models/{MODEL}/predict", body, 10, concurrency=1)
    return [
        row("direct BentoML predict, c=16", direct["rps"], "req/s"),
        row("hub-proxied predict, c=16", proxied["rps"], "req/s"),
        row("throughput ratio hub/direct", ratio, "", ">= 0.8"),
        row("direct p50 / p99", f"{direct['p50_ms']:.1f} / {direct['p99_ms']:.1f}", "ms"),
        row("hub p50 / p99", f"{proxied['p50_ms']:.1f} / {proxied['p99_ms']:.1f}", "ms"),
        row("added median latency", added, "ms", "<= 2"),
        row("added median latency, c=1", proxied_1["p50_ms"] - direct_1["p50_ms"], "ms"),
        row("errors (direct + hub)", direct["errors"] + proxied["errors"], "", "0"),
    ]


def _alternating(first: str, second: str, body: dict, rounds: int = ROUNDS) -> tuple[dict, dict]:
    """Load both URLs in turns (so drift in the shared machine's load hits both alike) and average."""
    runs = [(post_load(first, body, SECONDS), post_load(second, body, SECONDS)) for _ in range(rounds)]
    return tuple(_mean([r[i] for r in runs]) for i in (0, 1))


def _mean(results: list[dict]) -> dict:
    return {key: sum(r[key] for r in results) / len(results) for key in results[0]}


def row(name: str, value, unit: str, target: str = "") -> dict:
    return {"name": name, "value": value, "unit": unit, "target": target}


def _redeploy_seconds(hub: HubProcess) -> float:
    assert hub.aid("undeploy", f"{MODEL}@1.0.0").returncode == 0
    started = time.monotonic()
    result = hub.aid("deploy", f"{MODEL}@1.0.0")
    assert result.returncode == 0, result.stderr
    return time.monotonic() - started


@contextmanager
def deployed_hub(
    extra_env: dict | None = None, packages: list[Path] | None = None, workers: int | None = None
) -> Iterator[HubProcess]:
    """A hub (`aid serve [--workers N]`, process runner, SQLite in a new home) with MODEL (or each of
    `packages`) published and deployed, and the predict rate limit off (UNLIMITED) plus `extra_env`;
    undeployed and stopped after."""
    env = {**UNLIMITED, **(extra_env or {})}
    home = Path(tempfile.mkdtemp(prefix="aidhub-bench-"))
    hub = HubProcess(home, extra_env=env, workers=workers).start()
    try:
        for package in packages or [REPO / "examples" / MODEL]:
            result = hub.aid("publish", str(package), "--deploy")
            assert result.returncode == 0, result.stderr
        yield hub
    finally:
        hub.undeploy_all()
        hub.stop()
        shutil.rmtree(hub.home, ignore_errors=True)  # its log: 1 GB after a few heavy-onnx loads


def run() -> list[dict]:
    with deployed_hub() as hub:
        redeploy = _redeploy_seconds(hub)
        rows = _proxy_rows(hub)
    return [row("redeploy, environment built", redeploy, "s", "<= 10"), *rows]
