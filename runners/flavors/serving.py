"""Serving glue for the generated BentoML service: request dispatch, JSON replies, server fixes.

Imports only the standard library at module level (BentoML lazily, in `install_fixes`).
"""

from __future__ import annotations

import asyncio
import gc
import json
import os
import sys
import time
import traceback
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

from .batching import DEFAULT_MAX_BATCH_SIZE, DEFAULT_MAX_LATENCY_MS, Batcher

INLINE_BELOW_S = 0.002  # predictions faster than this run on the event loop
EWMA_WEIGHT = 0.2
SETUP_FAILED_FILE = "setup-failed.txt"  # in the service's working directory
# Where the working directory is read-only (a container), the runner sets this and reads the
# traceback from the server's output between these two lines instead of from the file.
SETUP_FAILED_LOG_ENV = "AID_SETUP_FAILED_LOG"
SETUP_FAILED_BEGIN = "---- aidhub: loading the model raised an exception ----"
SETUP_FAILED_END = "---- aidhub: end of setup failure ----"


def load_or_report(load: Callable[[], object], marker: str = SETUP_FAILED_FILE):
    """Run `load`; when it raises, write the traceback to `marker` and re-raise.

    BentoML restarts a worker whose setup fails, forever; the runner watches for this file to
    report the failure at once instead of waiting for its ready timeout.
    """
    try:
        return load()
    except BaseException:
        text = traceback.format_exc()
        if os.environ.get(SETUP_FAILED_LOG_ENV):
            print(f"{SETUP_FAILED_BEGIN}\n{text.rstrip()}\n{SETUP_FAILED_END}", file=sys.stderr, flush=True)
        try:
            Path(marker).write_text(text, encoding="utf-8")
        except OSError:
            pass
        raise


def settle_heap() -> None:
    """Collect once and freeze what survives (the model, BentoML, the libraries), once loaded: the
    collector's full passes then walk only what requests make. On the iris example a full pass fell
    from ~30 ms to ~3 ms (the pauses behind the p99) and its CPU per call from ~5 to ~3 us."""
    gc.collect()
    gc.freeze()


class Dispatcher:
    """Runs fast predictions on the event loop and slow ones in a small thread pool, batching
    concurrent calls when `batching` says so (see batching.py).

    Handing every request to a thread costs about 1 ms of CPU in BentoML (more than a small
    model's whole inference); a slow model on the loop would stall /readyz and other requests.
    The choice follows a moving average of the measured prediction (or batch) time.
    `batching`: {"enabled": bool, "inputs": [names], "max_batch_size": n, "max_latency_ms": ms}.
    """

    def __init__(self, predict: Callable[[dict], dict], threads: int = 4, batching: dict | None = None):
        self.predict = predict
        self.threads = threads
        self.average_s = 0.0
        self._pool: ThreadPoolExecutor | None = None
        self.batcher = _batcher(predict, self.run, batching or {})

    async def __call__(self, inputs: dict) -> dict:
        if self.batcher is not None:
            return await self.batcher(inputs)
        return await self.run(self.predict, inputs)

    async def run(self, predict: Callable[[dict], dict], inputs: dict) -> dict:
        """`predict(inputs)`, on the loop or in the pool."""
        if self.average_s < INLINE_BELOW_S:
            return self._timed(predict, inputs)
        loop = asyncio.get_running_loop()
        return await loop.run_in_executor(self._executor(), self._timed, predict, inputs)

    def _timed(self, predict: Callable[[dict], dict], inputs: dict) -> dict:
        started = time.perf_counter()
        try:
            return predict(inputs)
        finally:
            elapsed = time.perf_counter() - started
            self.average_s += EWMA_WEIGHT * (elapsed - self.average_s)

    def _executor(self) -> ThreadPoolExecutor:
        if self._pool is None:
            self._pool = ThreadPoolExecutor(self.threads, thread_name_prefix="aid-predict")
        return self._pool


def _batcher(predict: Callable[[dict], dict], run, batching: dict) -> Batcher | None:
    if not batching.get("enabled") or not batching.get("inputs"):
        return None
    return Batcher(
        predict,
        batching["inputs"],
        run,
        max_batch_size=batching.get("max_batch_size", DEFAULT_MAX_BATCH_SIZE),
        max_latency_ms=batching.get("max_latency_ms", DEFAULT_MAX_LATENCY_MS),
    )


def json_body(value) -> bytes:
    """Compact JSON bytes: the service replies with a ready Response, which skips BentoML's
    per-request output schema work (about 1 ms)."""
    return json.dumps(value, separators=(",", ":")).encode()


class CancellingTimeoutMiddleware:
    """BentoML's TimeoutMiddleware, but its per-request timer is cancelled.

    BentoML's `TimeoutMiddleware` (bentoml/_internal/server/http/traffic.py) starts a
    `loop.call_later` timer per request and never cancels it: timers pile up on the event loop's
    heap for `traffic.timeout` seconds (60 s), memory grows and the p99 latency climbs with uptime.
    Checked on 2026-12-02: still so in BentoML 1.4.40 (the newest installed here) and on upstream
    main (commit 32230a5, 2026-04-30); no release fixes it (no upstream issue about it found). There is
    no public way around it: the v2 config schema requires `traffic.timeout` > 0 (null and 0 are
    refused), the middleware is added whenever it is set, and `@bentoml.service(middlewares)` can
    only add middleware, not replace this one. So `install_fixes` swaps in this class: same
    behaviour (504 when no response has started in time), timer cancelled once the response starts
    or the request ends.
    """

    def __init__(self, app, timeout: float) -> None:
        self.app = app
        self.timeout = timeout

    async def __call__(self, scope, receive, send) -> None:
        if scope["type"] not in ("http", "websocket"):
            return await self.app(scope, receive, send)
        loop = asyncio.get_running_loop()
        started = loop.create_future()
        timer = loop.call_later(self.timeout, _resolve, started, False)

        async def _send(message) -> None:
            _resolve(started, True)
            await send(message)

        task = asyncio.ensure_future(self.app(scope, receive, _send))
        task.add_done_callback(lambda _: _resolve(started, True))
        try:
            in_time = await started
        except asyncio.CancelledError:
            task.cancel()
            raise
        finally:
            timer.cancel()
        if in_time or not task.cancel():
            return await task
        await _send_timeout(send, self.timeout)


def _resolve(future: asyncio.Future, value: bool) -> None:
    if not future.done():
        future.set_result(value)


async def _send_timeout(send, timeout: float) -> None:
    body = json.dumps({"error": f"Not able to process the request in {timeout} seconds"}).encode()
    headers = [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode())]
    await send({"type": "http.response.start", "status": 504, "headers": headers})
    await send({"type": "http.response.body", "body": body})


def install_fixes() -> None:
    """Make BentoML build its apps with CancellingTimeoutMiddleware (call before serving).

    Only while BentoML's class still has the leaking shape (its `_set_timer_out` callback): a
    BentoML that fixes or renames it is left alone rather than patched blindly.
    """
    from bentoml._internal.server.http import traffic

    if hasattr(traffic.TimeoutMiddleware, "_set_timer_out"):
        traffic.TimeoutMiddleware = CancellingTimeoutMiddleware
