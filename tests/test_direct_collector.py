"""The hub's collector of direct calls: it stores what a server's buffer holds, acknowledges it, spaces
its rounds, backs off from a server that is down, and answers feedback on a call it has not stored yet.
(The buffer and its records are in test_direct_calls.py.)"""

from __future__ import annotations

import sys
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager

from hub.collector import BUSY_INTERVAL_S, BUSY_RECORDS, Collector, report_token
from hub.errors import ModelFailed
from monitor.metrics import Metrics
from monitor.predlog import PredictionLog
from monitor.scorecard import totals_by_version
from monitor.tables import Prediction
from registry.models import DeploymentRow, ModelRow, VersionRow
from runners.flavors import calls
from runners.flavors.calls import CallBuffer
from tests.postgres import _free_port
from tests.test_direct_calls import take
from vocab.states import DeploymentStatus


class BufferServer:
    """The hub's ModelClient seam, answering from a real CallBuffer (what POST /aidhub/calls does),
    or failing like a server that is down."""

    def __init__(self, buffer: CallBuffer):
        self.buffer, self.down, self.fetches = buffer, False, 0

    def direct_calls(self, url: str, ack: dict[str, int], limit: int) -> bytes:
        if self.down:
            raise ModelFailed(f"The model server at {url} did not answer: connection refused")
        self.fetches += 1
        return self.buffer.take(ack.get(self.buffer.worker, 0), limit)


@contextmanager
def serving(app, at: str):
    """The ASGI `app` served over HTTP at path `at` on a free port, in a thread: the base URL."""
    import uvicorn
    from starlette.applications import Starlette
    from starlette.routing import Mount

    mounted = Starlette(routes=[Mount(at, app)])
    server = uvicorn.Server(uvicorn.Config(mounted, host="127.0.0.1", port=_free_port(), log_level="warning"))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    try:
        while not server.started:
            time.sleep(0.01)
        yield f"http://127.0.0.1:{server.config.port}"
    finally:
        server.should_exit = True
        thread.join(10)


def wait_until_waiting_in(pool: ThreadPoolExecutor, function: str, timeout: float = 10.0) -> None:
    """Until the pool's thread is in `function` (blocked there: on a lock)."""
    (thread,) = pool._threads
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        frame = sys._current_frames().get(thread.ident)
        while frame is not None and frame.f_code.co_name != function:
            frame = frame.f_back
        if frame is not None:
            return
        time.sleep(0.01)
    raise AssertionError(f"the thread did not reach {function}() in {timeout} s")


def serving_version() -> VersionRow:
    model = ModelRow.create(name="iris", task="classification")
    version = VersionRow.create(model=model, version="1.0.0", digest="0" * 64, size=1, manifest={},
                                inputs={}, outputs={})  # fmt: skip
    DeploymentRow.create(version=version, status=DeploymentStatus.READY, url="http://127.0.0.1:9")
    return version


def test_the_collector_stores_then_acknowledges_and_never_counts_a_call_twice(db):
    version, buffer = serving_version(), CallBuffer("secret")
    ids = [
        buffer.add(time.time(), 2.0, {"x": i}, b'{"y":1}', error="boom" if i == 0 else None) for i in range(3)
    ]
    server = BufferServer(buffer)
    with PredictionLog(db) as log:
        assert Collector(server, log, Metrics()).collect() == 3  # fetched, stored; not yet acknowledged
        assert take(buffer, 0, 10)["waiting"] == 3
        restarted = Metrics()  # a hub that stored them but died before it acknowledged
        again = Collector(server, log, restarted)
        assert again.collect() == 3 and again.collect() == 0  # sent again, stored once; then acknowledged
        counted = [
            restarted.predictions.labels("iris", "1.0.0", s, "direct")._value.get() for s in ("ok", "error")
        ]
        assert counted == [0, 0]  # not new: its counters (seeded from the rollups) hold them already
    assert take(buffer, 0, 10)["waiting"] == 0
    assert sorted(p.id for p in Prediction.select()) == sorted(ids)
    totals = totals_by_version([version.id])[version.id]
    assert (totals["requests"], totals["direct"], totals["direct_errors"]) == (3, 3, 1)


def test_a_busy_round_spaces_the_next_rounds_and_a_server_that_is_down_is_retried_later(db):
    serving_version()
    buffer, now = CallBuffer("secret"), [1000.0]
    server = BufferServer(buffer)
    with PredictionLog(db) as log:
        collector = Collector(server, log, Metrics(), clock=lambda: now[0])
        for _ in range(BUSY_RECORDS):
            buffer.add(time.time(), 1.0, {"x": 1}, b"{}")
        assert collector.run_once() == BUSY_RECORDS
        buffer.add(time.time(), 1.0, {"x": 2}, b"{}")
        now[0] += 1.0
        assert collector.run_once() == 0 and server.fetches == 1  # a busy round: the next waits
        now[0] += BUSY_INTERVAL_S - 1.0
        assert collector.run_once() == 1 and server.fetches == 2
        now[0] += 1.0
        server.down = True
        assert collector.run_once() == 0 and collector.failures  # tried, failed: backs off
        buffer.add(time.time(), 1.0, {"x": 3}, b"{}")
        server.down = False
        assert collector.run_once() == 0 and server.fetches == 2  # within the backoff: not tried
        now[0] += 1.0
        assert collector.run_once() == 1  # kept by the server, collected once it answers


def test_feedback_finds_a_direct_call_stored_by_the_round_its_collection_waited_for(hub, publish):
    """Feedback on an id not stored yet collects what the servers hold; when the loop's round (which
    held the lock) stored the call meanwhile, that collection stores nothing, and the id is found.
    A real server's collect route over HTTP, the hub's own collector, lock and database."""
    publish(name="iris")
    version = VersionRow.select().join(ModelRow).where(ModelRow.name == "iris").get()
    buffer = CallBuffer(report_token(hub.config.home))
    with serving(calls.collect_app(buffer), at=calls.ROUTE_PREFIX) as url, ThreadPoolExecutor(1) as pool:
        DeploymentRow.create(version=version, status=DeploymentStatus.READY, url=url)
        with hub.collector.lock:  # the loop's round holds it from before the call is made
            pid = buffer.add(time.time(), 1.0, {"x": 1}, b'{"y":1}')
            answer = pool.submit(hub.feedback, pid, {"correct": True})
            wait_until_waiting_in(pool, "collect")
            assert hub.collector._collect_from(url, version) == 1  # the round's work, under its lock
        assert answer.result(30)["correct"] is True
