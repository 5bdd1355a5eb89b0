"""Rate limits per client on predict and feedback, as WSGI in front of everything else.

A client is its token (the Authorization header), else its address. Each client has a token bucket
per kind of call: `rate` calls a second on average, bursts of up to `burst`. A call over the limit is
answered 429 with Retry-After (the seconds until the bucket has a call again), before the hub reads
its body. Buckets live in this process: with several web workers each enforces its own share."""

from __future__ import annotations

import json
import math
import re
import threading
import time
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass

KINDS = {
    "predict": re.compile(r"^/(api/v1/models/.+/predict|v2/models/.+/infer)$"),
    "feedback": re.compile(
        r"^/(api/v1/predictions/[^/]+/feedback|api/v1/models/.+/feedback|models/.+/feedback)$"
    ),
}
MAX_CLIENTS = 100_000  # buckets kept per kind; the least recently seen are forgotten first


@dataclass
class Bucket:
    tokens: float
    at: float


class Limiter:
    """`rate` calls a second per client, bursts of `burst`; `clock` is a seam for tests."""

    def __init__(self, rate: float, burst: int, clock: Callable[[], float] = time.monotonic):
        self.rate, self.burst, self.clock = rate, burst, clock
        self.buckets: OrderedDict[str, Bucket] = OrderedDict()
        self.lock = threading.Lock()

    def wait(self, client: str) -> float:
        """0 when `client` may call now (and the call is counted), else the seconds until it may."""
        now = self.clock()
        with self.lock:
            bucket = self.buckets.pop(client, None) or Bucket(float(self.burst), now)
            bucket.tokens = min(float(self.burst), bucket.tokens + (now - bucket.at) * self.rate)
            bucket.at = now
            self.buckets[client] = bucket
            if len(self.buckets) > MAX_CLIENTS:
                self.buckets.popitem(last=False)
            if bucket.tokens >= 1.0:
                bucket.tokens -= 1.0
                return 0.0
            return (1.0 - bucket.tokens) / self.rate


class RateLimits:
    """WSGI middleware: `limits` maps a kind of call (predict, feedback) to its Limiter; the
    setting that sets it is named in the 429's message."""

    def __init__(self, app, limits: dict[str, Limiter], settings: dict[str, str]):
        self.app, self.limits, self.settings = app, limits, settings

    def __call__(self, environ, start_response):
        if environ.get("REQUEST_METHOD") == "POST":
            for kind, limiter in self.limits.items():
                if KINDS[kind].match(environ.get("PATH_INFO", "")):
                    wait = limiter.wait(client_of(environ))
                    if wait:
                        return self._refuse(start_response, kind, limiter, wait)
                    break
        return self.app(environ, start_response)

    def _refuse(self, start_response, kind: str, limiter: Limiter, wait: float):
        message = (
            f"Too many {kind} calls from this client: the limit is {limiter.rate:g} a second "
            f"(bursts of {limiter.burst}). Wait {wait:.2f} s, or ask the hub's operator to raise "
            f"{self.settings[kind]}."
        )
        body = json.dumps({"ok": False, "error": message, "errors": [], "status": 429}).encode()
        start_response("429 Too Many Requests", [
            ("Content-Type", "application/json"), ("Content-Length", str(len(body))),
            ("Retry-After", str(max(1, math.ceil(wait)))),
        ])  # fmt: skip
        return [body]


def client_of(environ) -> str:
    """The caller's token when it sends one (a made-up one gets 401 anyway), else its address."""
    kind, _, token = environ.get("HTTP_AUTHORIZATION", "").partition(" ")
    if kind.lower() == "bearer" and token.strip():
        return "token:" + token.strip()
    return "addr:" + environ.get("REMOTE_ADDR", "")


def install(app, rates: dict[str, tuple[float, int]], settings: dict[str, str]):
    """`app` wrapped with the limits of `rates` (kind -> (calls a second, burst)); 0 calls: no limit."""
    limits = {kind: Limiter(rate, burst) for kind, (rate, burst) in rates.items() if rate > 0}
    return RateLimits(app, limits, settings) if limits else app
