"""Fixes for the installed BentoML server, applied by the generated service module on import.

BentoML 1.4.39's `TimeoutMiddleware` starts a `loop.call_later` timer per request and never
cancels it: timers pile up on the event loop's heap for `traffic.timeout` seconds (60 s), memory
grows and the p99 latency climbs with uptime. Its config schema rejects turning the timeout off,
so we swap in a middleware with the same behaviour (504 when no response started in time) that
cancels its timer as soon as the response starts or the request ends.
"""

from __future__ import annotations

import asyncio
import json


class CancellingTimeoutMiddleware:
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


def install() -> None:
    """Make BentoML build its apps with CancellingTimeoutMiddleware (call before serving)."""
    from bentoml._internal.server.http import traffic

    traffic.TimeoutMiddleware = CancellingTimeoutMiddleware
