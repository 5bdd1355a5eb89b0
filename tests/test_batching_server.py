"""Batching in a real model server: the process runner starts the generated BentoML service for a
row-wise model with batching on, and concurrent HTTP calls each get their own rows back."""

from __future__ import annotations

import asyncio
from pathlib import Path

import httpx
import pytest

from runners import ServeSpec, make_runner
from tests.hubserver import CACHE

FIXTURE = Path(__file__).parent / "fixtures" / "runner_batch_rows"
BATCHING = {"enabled": True, "max_batch_size": 16, "max_latency_ms": 10}


def batch_spec(batching: dict, version: str) -> ServeSpec:
    return ServeSpec(
        name="batch-rows", version=version, digest="0" * 64, package_dir=FIXTURE, framework="python",
        artifact=None, entrypoint="predict.py:Model", inputs={"x": {"dtype": "float64", "shape": [-1, 2]}},
        outputs={"doubled": {}, "call_rows": {}}, batching=batching,
    )  # fmt: skip


@pytest.fixture(scope="module")
def servers(tmp_path_factory):
    """{"on": url, "off": url}: the same model with batching on and off (environments from the shared
    caches, built once per machine)."""
    runner = make_runner(
        "process", envs_dir=CACHE / "envs", wheelhouse=CACHE / "wheelhouse", uv_cache=CACHE / "uv",
        deployments_dir=tmp_path_factory.mktemp("deployments"), ready_timeout=120.0,
    )  # fmt: skip
    log = []
    started = {
        "on": runner.start(batch_spec(BATCHING, "1.0.0"), log.append),
        "off": runner.start(batch_spec({}, "1.0.1"), log.append),
    }
    yield {name: f"{instance.url}/predict" for name, instance in started.items()}
    for instance in started.values():
        runner.stop(instance)
    runner.close()


def caller_rows(caller: int) -> list[list[float]]:
    """1 to 3 rows, different for every caller."""
    return [[caller + 0.5, -float(row)] for row in range(1 + caller % 3)]


async def call_all(url: str, callers: int) -> list[dict]:
    async with httpx.AsyncClient(timeout=60, limits=httpx.Limits(max_connections=callers)) as client:
        replies = await asyncio.gather(
            *(client.post(url, json={"inputs": {"x": caller_rows(c)}}) for c in range(callers))
        )
    assert [r.status_code for r in replies] == [200] * callers, [r.text for r in replies]
    return [r.json() for r in replies]


@pytest.mark.slow
def test_concurrent_calls_are_batched_and_each_caller_gets_its_own_rows(servers):
    batched = asyncio.run(call_all(servers["on"], 24))
    alone = asyncio.run(call_all(servers["off"], 24))
    for caller, (reply, unbatched) in enumerate(zip(batched, alone, strict=True)):
        assert reply["doubled"] == unbatched["doubled"] == [[2 * a, 2 * b] for a, b in caller_rows(caller)]
        assert unbatched["call_rows"] == [len(caller_rows(caller))] * len(caller_rows(caller))
    assert max(row for reply in batched for row in reply["call_rows"]) > 3  # several callers in one call
    assert max(row for reply in batched for row in reply["call_rows"]) <= BATCHING["max_batch_size"]


@pytest.mark.slow
def test_a_bad_call_among_batched_ones_fails_alone(servers):
    async def scenario():
        async with httpx.AsyncClient(timeout=60) as client:
            good = [client.post(servers["on"], json={"inputs": {"x": caller_rows(c)}}) for c in range(6)]
            bad = client.post(servers["on"], json={"inputs": {"x": [[1.0, 2.0, 3.0]]}})  # joins, then fails
            return await asyncio.gather(*good[:3], bad, *good[3:])

    replies = asyncio.run(scenario())
    bad = replies.pop(3)
    assert bad.status_code == 500 and "check the server log" in bad.text
    expected = [[[2 * a, 2 * b] for a, b in caller_rows(c)] for c in range(6)]
    assert [r.json()["doubled"] for r in replies] == expected
