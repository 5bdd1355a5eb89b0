"""The hub's batcher (hub/batcher.py) with plain threads and a `send` that stands in for the model
server (a seam: tests/test_load.py runs it in a real hub, under gevent, against a real server)."""

from __future__ import annotations

import threading
import time

import numpy as np
import pytest

from hub.batcher import STOPPED, Batcher
from hub.errors import ModelFailed

MAX_ROWS = 16


class Server:
    """Doubles each row of `x`; holds each call `seconds` so that others queue meanwhile. Rows with
    a negative value are refused (the whole call fails, as a server's 4xx would)."""

    def __init__(self, seconds: float = 0.02, rows_out: bool = True):
        self.seconds, self.rows_out = seconds, rows_out
        self.calls: list[int] = []  # rows per call received

    def __call__(self, arrays: dict) -> dict:
        x = arrays["x"]
        self.calls.append(len(x))
        time.sleep(self.seconds)
        if (x < 0).any():
            raise ModelFailed("The model failed (HTTP 400 from its server): negative")
        if not self.rows_out:
            return {"total": [float(x.sum())]}
        return {"doubled": (2 * x).tolist(), "call_rows": [len(x)] * len(x)}


def rows_of(caller: int) -> np.ndarray:
    """1 to 3 rows, different for every caller."""
    return np.array([[caller + 0.5, float(row)] for row in range(1 + caller % 3)])


def call_all(batcher: Batcher, inputs: list[np.ndarray]) -> list:
    """Each input sent by its own thread, all at once: the outputs, or the exception, in order."""
    results: list = [None] * len(inputs)
    start = threading.Barrier(len(inputs))

    def one(i: int) -> None:
        start.wait()
        try:
            results[i] = batcher({"x": inputs[i]})
        except BaseException as e:  # noqa: BLE001 - what the caller got is the result
            results[i] = e

    threads = [threading.Thread(target=one, args=(i,)) for i in range(len(inputs))]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=30)
    assert not any(t.is_alive() for t in threads), "a caller still waits"
    return results


def test_concurrent_calls_join_and_each_caller_gets_its_own_rows():
    server, sizes = Server(), []
    batcher = Batcher(server, ["x"], MAX_ROWS, max_latency_ms=5, on_batch=sizes.append)
    inputs = [rows_of(c) for c in range(40)]
    results = call_all(batcher, inputs)
    for x, outputs in zip(inputs, results, strict=True):
        assert outputs["doubled"] == (2 * x).tolist()
    assert max(sizes) > 1 and max(server.calls) > 3  # calls joined
    assert max(server.calls) <= MAX_ROWS
    assert sum(server.calls) == sum(len(x) for x in inputs) and sum(sizes) == len(inputs)


def test_a_lone_caller_is_sent_at_once_alone():
    server, sizes = Server(seconds=0), []
    batcher = Batcher(server, ["x"], MAX_ROWS, max_latency_ms=1000, on_batch=sizes.append)
    began = time.perf_counter()
    assert batcher({"x": rows_of(1)})["doubled"] == (2 * rows_of(1)).tolist()
    assert time.perf_counter() - began < 0.5 and sizes == [1] and server.calls == [2]


def test_after_a_batch_of_several_a_new_one_waits_for_company_at_most_max_latency():
    server = Server()
    batcher = Batcher(server, ["x"], MAX_ROWS, max_latency_ms=200)
    call_all(batcher, [rows_of(c) for c in range(12)])
    assert batcher.last_size > 1
    began = time.perf_counter()
    batcher({"x": rows_of(0)})  # nobody comes: it waits 0.2 s, then goes alone
    assert 0.15 < time.perf_counter() - began < 2


def test_a_batch_the_server_refuses_is_sent_again_call_by_call_and_only_the_bad_call_fails():
    server = Server()
    inputs = [rows_of(c) for c in range(10)]
    inputs[4] = np.array([[-1.0, 0.0]])
    results = call_all(Batcher(server, ["x"], MAX_ROWS, max_latency_ms=5), inputs)
    assert isinstance(results[4], ModelFailed) and "negative" in str(results[4])
    for i, (x, outputs) in enumerate(zip(inputs, results, strict=True)):
        if i != 4:
            assert outputs["doubled"] == (2 * x).tolist()


def test_outputs_without_a_row_per_input_row_turn_batching_off():
    server = Server(rows_out=False)
    batcher = Batcher(server, ["x"], MAX_ROWS, max_latency_ms=5)
    inputs = [rows_of(c) for c in range(8)]
    results = call_all(batcher, inputs)
    assert [r["total"] for r in results] == [[float(x.sum())] for x in inputs]  # each sent alone again
    assert not batcher.enabled
    calls = len(server.calls)
    batcher({"x": rows_of(2)})
    assert len(server.calls) == calls + 1  # from then on straight to the server


@pytest.mark.parametrize(
    "arrays",
    [
        {"x": np.zeros((MAX_ROWS, 2))},  # a batch of its own
        {"x": np.zeros((2, 2)), "y": np.zeros((2, 2))},  # not the model's inputs
        {"x": np.float64(1.0)},  # no first dimension
    ],
)
def test_calls_that_cannot_join_go_straight_to_the_server(arrays):
    sent = []
    batcher = Batcher(lambda a: sent.append(a) or {"ok": [1]}, ["x"], MAX_ROWS, max_latency_ms=5)
    assert batcher(arrays) == {"ok": [1]} and sent == [arrays]


class Stopped(BaseException):
    """What gevent raises in a greenlet that is killed (GreenletExit is a BaseException)."""


def test_a_leader_stopped_mid_send_fails_its_batch_and_the_calls_queued_after_still_get_answers():
    """A (alone) is out while B, C and D queue; B leads their batch and is stopped mid-send, while E
    queues: B gets the stop, C and D an error naming it, E its answer."""
    sent, out = [], threading.Event()

    def send(arrays: dict) -> dict:
        sent.append(arrays["x"][:, 0].tolist())
        out.set()
        time.sleep(0.2)
        if 1.0 in arrays["x"][:, 0]:  # B's batch
            raise Stopped
        return {"first": arrays["x"][:, 0].tolist()}

    batcher = Batcher(send, ["x"], MAX_ROWS, max_latency_ms=5)
    results, threads = {}, []

    def call(name: str, value: float) -> None:
        try:
            results[name] = batcher({"x": np.array([[value, 0.0]])})
        except BaseException as e:  # noqa: BLE001
            results[name] = e

    for name, value in [("A", 0.0), ("B", 1.0), ("C", 2.0), ("D", 3.0), ("E", 4.0)]:
        threads.append(threading.Thread(target=call, args=(name, value)))
        threads[-1].start()
        if name in "AD":
            out.wait(5)  # A is out; after D, B's batch is
            out.clear()
            time.sleep(0.05)
    for thread in threads:
        thread.join(timeout=10)
    assert sent == [[0.0], [1.0, 2.0, 3.0], [4.0]]
    assert results["A"] == {"first": [0.0]} and results["E"] == {"first": [4.0]}
    assert isinstance(results["B"], Stopped)
    assert all(isinstance(results[n], ModelFailed) and STOPPED in str(results[n]) for n in "CD")


@pytest.fixture
def greenlets(monkeypatch):
    """The batcher's locks and events as gevent's, as under `aid serve` (whose standard library
    gevent patches); callers are greenlets, which can be killed while they wait."""
    import types

    import gevent.event
    import gevent.lock

    import hub.batcher

    primitives = types.SimpleNamespace(Lock=gevent.lock.Semaphore, Event=gevent.event.Event)
    monkeypatch.setattr(hub.batcher, "threading", primitives)


def gevent_send(sent: list):
    import gevent

    def send(arrays: dict) -> dict:
        sent.append(arrays["x"][:, 0].tolist())
        gevent.sleep(0.05)  # the server's answer is I/O: the other greenlets run meanwhile
        return {"first": arrays["x"][:, 0].tolist()}

    return send


@pytest.mark.usefixtures("greenlets")
def test_a_caller_killed_while_it_waits_leaves_the_queue_and_the_others_are_answered():
    import gevent

    sent = []
    batcher = Batcher(gevent_send(sent), ["x"], MAX_ROWS, max_latency_ms=5)
    a = gevent.spawn(batcher, {"x": np.array([[0.0, 0.0]])})
    gevent.sleep(0.01)  # A's call is out
    b, c = (gevent.spawn(batcher, {"x": np.array([[v, 0.0]])}) for v in (1.0, 2.0))
    gevent.sleep(0.01)  # B and C wait
    b.kill()
    gevent.joinall([a, c], timeout=5)
    assert a.value == {"first": [0.0]} and c.value == {"first": [2.0]}
    assert sent == [[0.0], [2.0]]  # B's call was never sent


@pytest.mark.usefixtures("greenlets")
def test_a_leader_killed_while_it_waits_for_company_does_not_keep_the_lead():
    import gevent

    sent = []
    batcher = Batcher(gevent_send(sent), ["x"], MAX_ROWS, max_latency_ms=2000)
    callers = [gevent.spawn(batcher, {"x": np.array([[v, 0.0]])}) for v in (0.0, 1.0, 2.0)]
    gevent.joinall(callers, timeout=5)
    assert batcher.last_size > 1  # so the next leader waits for company
    waiting = gevent.spawn(batcher, {"x": np.array([[3.0, 0.0]])})
    gevent.sleep(0.05)
    waiting.kill()
    late = gevent.spawn(batcher, {"x": np.array([[4.0, 0.0]])})  # leads at once or after 2 s
    late.join(timeout=5)
    assert late.value == {"first": [4.0]}
    assert [3.0] not in sent
