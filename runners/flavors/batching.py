"""Adaptive micro-batching: concurrent calls to a row-wise model become one call on their rows.

A call's inputs are a dict of tensors whose first dimension is the batch (nested lists from JSON, or
numpy arrays). Calls that arrive while the model is busy queue up; when it is free, the queued calls
(up to `max_batch_size` rows) are joined along axis 0, predicted in one run, and the outputs are cut
back into each call's rows. The batch size follows the load: a lone caller runs at once, alone, and
under load a batch grows to what arrived during the previous run. Only when the last batch held more
than one call (traffic is concurrent) does an idle model wait for company: until as many calls as
that batch held have queued (or `max_batch_size` rows), at most `max_latency_ms`. So two callers
taking turns wait for each other briefly, and a lone caller never waits.

A batch that fails (one call with a bad shape, say) is run again call by call, so one bad request
fails only itself. A model whose outputs do not have a row per input row (an aggregate) cannot be
cut apart: it is then served unbatched from that call on.

Imports only the standard library at module level; numpy only when arrays have to be joined.
"""

from __future__ import annotations

import asyncio
import itertools
import logging
from collections import deque
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field

log = logging.getLogger(__name__)

# Used when a service is given `{"enabled": true}` alone; the manifest (registry/manifest.py) fills in
# the same defaults for every published version.
DEFAULT_MAX_BATCH_SIZE = 32
DEFAULT_MAX_LATENCY_MS = 10.0

Predict = Callable[[dict], dict]
Run = Callable[[Predict, dict], Awaitable[dict]]  # runs predict(inputs), e.g. in a thread pool


class NotSplittable(ValueError):
    """The model's outputs for a batch do not hold one row per input row."""


@dataclass(eq=False)
class _Call:
    inputs: dict
    rows: int
    future: asyncio.Future = field(repr=False)


def batch_rows(inputs, names: list[str]) -> int | None:
    """The number of rows of a call whose inputs can join a batch, else None: it must hold exactly
    the model's `names`, each a list or an array of one dimension or more, all with the same length."""
    if not isinstance(inputs, dict) or len(inputs) != len(names) or any(n not in inputs for n in names):
        return None
    lengths = {_rows(inputs[n]) for n in names}
    if len(lengths) != 1 or None in lengths or 0 in lengths:
        return None
    return lengths.pop()


def _rows(value) -> int | None:
    if isinstance(value, list):
        return len(value)
    shape = getattr(value, "shape", None)  # a numpy array, without importing numpy here
    return shape[0] if isinstance(shape, tuple) and shape else None


def join_inputs(calls: list[dict], names: list[str]) -> dict:
    """Each input of `calls` joined along the first dimension: lists are chained (what the flavor
    would read from JSON anyway), anything else goes through numpy.concatenate."""
    joined = {}
    for name in names:
        values = [c[name] for c in calls]
        if all(isinstance(v, list) for v in values):
            joined[name] = list(itertools.chain.from_iterable(values))
        else:
            import numpy as np

            joined[name] = np.concatenate([np.asarray(v) for v in values])
    return joined


def split_outputs(outputs: dict, rows: list[int]) -> list[dict]:
    """`outputs` of a batch cut into one dict per call, `rows[i]` rows each (lists or arrays)."""
    total = sum(rows)
    for name, value in outputs.items():
        if _rows(value) != total:
            raise NotSplittable(f"Output {name!r} of a batch of {total} rows has {_rows(value)} rows.")
    starts = list(itertools.accumulate(rows, initial=0))
    return [{k: v[a:b] for k, v in outputs.items()} for a, b in itertools.pairwise(starts)]


class Batcher:
    """`await batcher(inputs) -> outputs`, batching concurrent calls (see the module's docstring)."""

    def __init__(
        self,
        predict: Predict,
        names: list[str],
        run: Run,
        max_batch_size: int = DEFAULT_MAX_BATCH_SIZE,
        max_latency_ms: float = DEFAULT_MAX_LATENCY_MS,
    ):
        self.predict, self.names, self.run = predict, list(names), run
        self.max_batch_size = max(1, int(max_batch_size))
        self.max_latency_s = max(0.0, float(max_latency_ms)) / 1000
        self.enabled = bool(self.names)
        self.sizes: deque[int] = deque(maxlen=1000)  # calls per batch run, newest last
        self._queue: deque[_Call] = deque()
        self._running: list[_Call] = []  # the batch the model has now
        self._queued_rows = 0
        self._full = asyncio.Event()
        self._drainer: asyncio.Task | None = None

    async def __call__(self, inputs: dict) -> dict:
        rows = batch_rows(inputs, self.names) if self.enabled else None
        if rows is None or rows >= self.max_batch_size:
            return await self.run(self.predict, inputs)
        call = _Call(inputs, rows, asyncio.get_running_loop().create_future())
        self._queue.append(call)
        self._queued_rows += rows
        if self._enough():
            self._full.set()
        if self._drainer is None or self._drainer.done():
            self._drainer = asyncio.ensure_future(self._drain())
        return await call.future

    async def _drain(self) -> None:
        try:
            if self.sizes and self.sizes[-1] > 1 and self.max_latency_s and not self._enough():
                await self._wait_for_company()
            while self._queue:
                await self._run_batch(self._take())
        except BaseException as e:  # cancelled at shutdown: no caller waits forever
            for call in [*self._running, *self._queue]:
                _fail(call, e if isinstance(e, Exception) else RuntimeError("The server is stopping."))
            raise

    def _enough(self) -> bool:
        """Whether the queue holds a full batch, or as many calls as the last batch held."""
        last = self.sizes[-1] if self.sizes else 1
        return self._queued_rows >= self.max_batch_size or len(self._queue) >= last

    async def _wait_for_company(self) -> None:
        self._full.clear()
        try:
            await asyncio.wait_for(self._full.wait(), self.max_latency_s)
        except asyncio.TimeoutError:  # noqa: UP041 - a model may run on Python 3.10, where they differ
            pass

    def _take(self) -> list[_Call]:
        """The oldest queued calls that fit in one batch (always at least one)."""
        batch, rows = [], 0
        while self._queue and (not batch or rows + self._queue[0].rows <= self.max_batch_size):
            call = self._queue.popleft()
            rows += call.rows
            if not call.future.done():  # its caller went away (cancelled)
                batch.append(call)
        self._queued_rows = sum(c.rows for c in self._queue)
        return batch

    async def _run_batch(self, batch: list[_Call]) -> None:
        if not batch:
            return
        self.sizes.append(len(batch))
        self._running = batch
        if len(batch) == 1:
            return await self._run_alone(batch[0])
        try:
            outputs = await self.run(self.predict, join_inputs([c.inputs for c in batch], self.names))
            parts = split_outputs(outputs, [c.rows for c in batch])
        except Exception as e:
            self._note_failure(e)
            for call in batch:
                await self._run_alone(call)
            return
        for call, part in zip(batch, parts, strict=True):
            _settle(call, part)

    async def _run_alone(self, call: _Call) -> None:
        try:
            _settle(call, await self.run(self.predict, call.inputs))
        except Exception as e:
            _fail(call, e)

    def _note_failure(self, error: Exception) -> None:
        if isinstance(error, NotSplittable):
            self.enabled = False
            log.warning("Batching turned off for this model: %s", error)


def _settle(call: _Call, outputs: dict) -> None:
    if not call.future.done():
        call.future.set_result(outputs)


def _fail(call: _Call, error: BaseException) -> None:
    if not call.future.done():
        call.future.set_exception(error)
