"""Load through a real hub: 10,000 predictions at concurrency 64 with feedback sent on the logged ids
while they run. No unexpected 5xx, and the scorecard counts exactly what the client saw succeed."""

from __future__ import annotations

import json
import queue
import re
import subprocess
import sys
import threading
import time
from concurrent.futures import ThreadPoolExecutor

import httpx
import numpy as np
import pytest

from benchmarks import batchhub
from benchmarks.peers import models
from benchmarks.serving import deployed_hub
from hub.collector import report_token
from tests.hubserver import REPO, HubProcess

CALLS, CONCURRENCY, FEEDBACK_EVERY = 10_000, 64, 10
pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def hub(tmp_path_factory):
    # one load generator is one client: the per-client rate limits would answer it 429
    batched = batchhub.batched_copy(models.iris(), tmp_path_factory.mktemp("batched"))
    with deployed_hub({"AIDHUB_RATE_FEEDBACK": "0"}, [REPO / "examples" / "iris-onnx", batched]) as server:
        yield server


def predict_all(url: str, ids: queue.Queue) -> list[tuple[int, float]]:
    """(status, seconds) of CALLS predictions at CONCURRENCY; every FEEDBACK_EVERY-th id goes to `ids`."""
    local = threading.local()

    def one(i: int) -> tuple[int, float]:
        if not hasattr(local, "client"):
            local.client = httpx.Client(timeout=30)
        began = time.perf_counter()
        reply = local.client.post(url, json={"inputs": {"features": [[5.1, 3.5, 1.4, 0.2 + (i % 7) / 10]]}})
        took = time.perf_counter() - began
        if reply.status_code == 200 and i % FEEDBACK_EVERY == 0:
            ids.put(reply.json()["id"])
        return reply.status_code, took

    with ThreadPoolExecutor(CONCURRENCY) as pool:
        return list(pool.map(one, range(CALLS)))


def send_feedback(base: str, ids: queue.Queue, done: threading.Event, statuses: list[int]) -> None:
    with httpx.Client(timeout=30) as client:
        while not (done.is_set() and ids.empty()):
            try:
                pid = ids.get(timeout=0.1)
            except queue.Empty:
                continue
            reply = client.post(f"{base}/api/v1/predictions/{pid}/feedback", json={"correct": True})
            statuses.append(reply.status_code)


def scorecard(hub: HubProcess) -> dict:
    return json.loads(hub.aid("scorecard", "iris-onnx", "--json").stdout)


def test_10000_predictions_at_concurrency_64_with_feedback_are_all_counted(hub):
    before = scorecard(hub)
    ids: queue.Queue = queue.Queue()
    done, feedback = threading.Event(), []
    sender = threading.Thread(target=send_feedback, args=(hub.url, ids, done, feedback))
    sender.start()
    started = time.monotonic()
    calls = predict_all(f"{hub.url}/api/v1/models/iris-onnx/predict", ids)
    seconds = time.monotonic() - started
    statuses, latencies = [c[0] for c in calls], sorted(c[1] for c in calls)
    done.set()
    sender.join(timeout=120)
    assert [s for s in statuses if s >= 500] == []
    assert statuses.count(200) == CALLS
    assert feedback.count(201) == len(feedback) == CALLS // FEEDBACK_EVERY
    deadline = time.monotonic() + 30
    while (card := scorecard(hub))["requests"] < before["requests"] + CALLS and time.monotonic() < deadline:
        time.sleep(0.5)
    assert card["requests"] - before["requests"] == CALLS
    assert card["errors"] == before["errors"]
    assert card["feedback"]["count"] - before["feedback"]["count"] == CALLS // FEEDBACK_EVERY
    p99 = latencies[int(len(latencies) * 0.99)] * 1000
    rate = CALLS / seconds
    print(f"{CALLS} predictions at c={CONCURRENCY} in {seconds:.1f} s ({rate:.0f} req/s, p99 {p99:.0f} ms)")


def test_calls_the_hub_joins_into_batches_each_get_the_answer_they_get_alone(hub):
    """The hub joins concurrent calls to a version with batching on (hub/batcher.py) and hands each
    caller its own rows: the same answers as the version without batching, called one by one."""
    rows = [[4.3 + i % 36 / 10, 2.0 + i % 24 / 10, 1.0 + i % 59 / 10, 0.1 + i % 25 / 10] for i in range(600)]

    def answers(name: str, concurrency: int) -> list[dict]:
        url = f"{hub.url}/api/v1/models/{name}/predict"
        with httpx.Client(timeout=30, limits=httpx.Limits(max_connections=concurrency)) as client:
            post = lambda row: client.post(url, json={"inputs": {"features": [row]}})  # noqa: E731
            with ThreadPoolExecutor(concurrency) as pool:
                replies = list(pool.map(post, rows))
        assert [r.status_code for r in replies] == [200] * len(rows), replies[0].text
        return [r.json()["outputs"] for r in replies]

    batched, alone = answers("iris-onnx-batched", 32), answers("iris-onnx", 1)
    assert [a["label"] for a in batched] == [a["label"] for a in alone]
    probabilities = [np.array([a["probabilities"] for a in answers]) for answers in (batched, alone)]
    np.testing.assert_allclose(*probabilities, rtol=1e-5, atol=1e-6)
    metrics = httpx.get(f"{hub.url}/metrics").text
    count, total = (
        float(re.search(rf'aidhub_batch_calls_{part}{{model="iris-onnx-batched"[^}}]*}} (\S+)', metrics)[1])
        for part in ("count", "sum")
    )
    assert total == len(rows)  # every call went in exactly one batch
    assert count < total / 2, f"{count} batches for {total} calls: hardly any joined"


def test_a_caller_killed_while_it_waits_leaves_the_queue_under_real_gevent(hub):
    """The batcher in a gevent-patched process (as under `aid serve`), sending to the real batched
    server: a caller killed while it waits leaves the queue, its call is never sent, and the calls
    around it get the answers they get alone (tests/gevent_batcher.py)."""
    version = httpx.get(f"{hub.url}/api/v1/models/iris-onnx-batched/versions/1.0.0").json()
    token = report_token(hub.home)  # the tensor route answers the hub only
    script = [sys.executable, "-m", "tests.gevent_batcher", version["deployment"]["url"], token]
    done = subprocess.run(script, cwd=REPO, capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    found = json.loads(done.stdout)
    assert found["answers"] == found["alone"]
    assert found["sent"] == [[4.5], [5.5]]  # the killed caller's 6.5 never went out
