"""The hub's side of adaptive batching: concurrent calls to one batchable version join into one call
to its server, as KServe's batcher does in front of a model server.

The server batches too (runners/flavors/batching.py), but only the model's run: each call still
costs the server an HTTP request (~0.2 ms of its CPU for heavy-onnx) and the hub a forward. Joined
here, N calls cost the server one request of N rows and the hub one forward.

The rules are the server's: a lone caller is sent at once, alone; calls that come while a batch is
out queue up, and the next batch is what queued (up to `max_batch_size` rows). Only when the last
batch held more than one call does a new batch wait for company: until as many calls as that batch
held have queued, at most `max_latency_ms`. One batch is out at a time per server and web worker:
its caller (the leader) sends it, hands each caller its rows, and passes the lead to the oldest call
still queued once its own call is answered. A batch the server refuses is sent again call by call,
so one bad call fails only itself; a model whose outputs have no row per input row is then served
call by call from there on. A caller stopped while it waits (a greenlet killed) takes its call out
of the queue and passes on the lead; a leader stopped mid-send fails the calls it carried.

Works alike under gevent (`aid serve`: the standard library's locks and events are gevent's) and
with plain threads (tests)."""

from __future__ import annotations

import threading
from collections import deque
from collections.abc import Callable

import numpy as np

from hub.errors import ModelFailed
from runners.flavors.batching import NotSplittable, batch_rows, split_outputs

STOPPED = "The call that carried this one to the model was stopped before it answered; try again."
Send = Callable[[dict], dict]  # numpy arrays -> the server's outputs


class _Call:
    __slots__ = ("arrays", "rows", "woken", "outputs", "error", "answered", "lead")

    def __init__(self, arrays: dict, rows: int):
        self.arrays, self.rows = arrays, rows
        self.woken = threading.Event()  # answered, or made the leader
        self.outputs: dict | None = None
        self.error: BaseException | None = None
        self.answered = self.lead = False

    def settle(self, outputs: dict | None, error: BaseException | None = None) -> None:
        self.outputs, self.error, self.answered = outputs, error, True
        self.woken.set()


class Batcher:
    """`batcher(arrays) -> outputs` for one server: `send(arrays)` with concurrent calls joined."""

    def __init__(
        self, send: Send, names: list[str], max_batch_size: int, max_latency_ms: float,
        on_batch: Callable[[int], None] | None = None,
    ):  # fmt: skip
        """`on_batch(calls)` is told of every batch sent, its calls counted (1: a call sent alone)."""
        self.send, self.names, self.on_batch = send, list(names), on_batch
        self.max_batch_size = max(1, int(max_batch_size))
        self.max_latency_s = max(0.0, float(max_latency_ms)) / 1000
        self.enabled = bool(self.names)
        self.last_size = 1  # calls in the last batch sent
        self._lock = threading.Lock()
        self._queue: deque[_Call] = deque()
        self._queued_rows = 0
        self._busy = False  # a leader is at work
        self._company = threading.Event()

    def __call__(self, arrays: dict) -> dict:
        rows = batch_rows(arrays, self.names) if self.enabled else None
        if rows is None or rows >= self.max_batch_size:
            return self.send(arrays)
        call = _Call(arrays, rows)
        with self._lock:
            self._queue.append(call)
            self._queued_rows += rows
            call.lead, self._busy = not self._busy, True
            if self._enough():
                self._company.set()
        if not call.lead:
            try:
                call.woken.wait()
            except BaseException:  # stopped while it waited (a greenlet killed)
                self._leave(call)
                raise
        if not call.answered:  # the lead: send batches until this call is answered
            self._lead(call)
        if call.error is not None:
            raise call.error
        return call.outputs

    def _enough(self) -> bool:
        return self._queued_rows >= self.max_batch_size or len(self._queue) >= self.last_size

    def _lead(self, own: _Call) -> None:
        batch: list[_Call] = []
        try:
            if self.last_size > 1 and self.max_latency_s:
                self._wait_for_company()
            while not own.answered:
                batch = self._take()
                self._run(batch)
        except BaseException:  # stopped mid-send (a greenlet killed): nobody in its batch waits forever
            for call in batch:
                if not call.answered:
                    call.settle(None, ModelFailed(STOPPED))
            raise
        finally:
            self._hand_over(own)

    def _wait_for_company(self) -> None:
        with self._lock:
            if self._enough():
                return
            self._company.clear()
        self._company.wait(self.max_latency_s)

    def _take(self) -> list[_Call]:
        """The oldest queued calls that fit in one batch (at least one)."""
        with self._lock:
            batch, rows = [], 0
            while self._queue and (not batch or rows + self._queue[0].rows <= self.max_batch_size):
                call = self._queue.popleft()
                rows += call.rows
                batch.append(call)
            self._queued_rows -= rows
        return batch

    def _leave(self, call: _Call) -> None:
        """A caller stopped while it waited: its call leaves the queue, and the lead goes on if it
        had just been handed it."""
        if call.lead and not call.answered:
            self._hand_over(call)
            return
        with self._lock:
            self._unqueue(call)

    def _unqueue(self, call: _Call) -> None:
        """`call` out of the queue, if it is there (a caller stopped before its call was sent)."""
        if not call.answered and call in self._queue:
            self._queue.remove(call)
            self._queued_rows -= call.rows

    def _hand_over(self, leaving: _Call) -> None:
        """The lead goes to the oldest queued call, if any, once `leaving` (the leader) is out of
        the queue."""
        with self._lock:
            self._unqueue(leaving)
            if not self._queue:
                self._busy = False
                return
            heir = self._queue[0]
        heir.lead = True
        heir.woken.set()

    def _run(self, batch: list[_Call]) -> None:
        self.last_size = len(batch)
        if self.on_batch is not None:
            self.on_batch(len(batch))
        if len(batch) == 1:
            return self._run_alone(batch[0])
        try:
            joined = {n: np.concatenate([c.arrays[n] for c in batch]) for n in self.names}
            parts = split_outputs(self.send(joined), [c.rows for c in batch])
        except Exception as e:  # a shape that does not join, a refused batch, outputs without rows
            if isinstance(e, NotSplittable):
                self.enabled = False
            for call in batch:
                self._run_alone(call)
            return
        for call, part in zip(batch, parts, strict=True):
            call.settle(part)

    def _run_alone(self, call: _Call) -> None:
        try:
            call.settle(self.send(call.arrays))
        except Exception as e:
            call.settle(None, e)
