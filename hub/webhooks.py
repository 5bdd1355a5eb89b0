"""Webhook delivery: a JSON POST per alert state change, signed, retried with backoff, each attempt
recorded, on worker threads of its own so that a slow or silent receiver holds up nothing else.

A delivery that fails (no answer within `timeout`, a refused connection, a 5xx or a 429) is tried again
after `backoff`, 2 x `backoff`, 4 x ... seconds, `attempts` times in all; waiting for a retry holds no
worker. Any other 4xx (and a redirect) ends it as failed at once: sending it again would not help.
With a secret, `X-Aidhub-Signature: sha256=<hex>` is the HMAC-SHA256 of the exact body.
"""

from __future__ import annotations

import hashlib
import heapq
import hmac
import itertools
import logging
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Callable
from dataclasses import dataclass

log = logging.getLogger(__name__)
RETRIED = frozenset({408, 425, 429, 500, 502, 503, 504})
USER_AGENT = "aidhub-alerts/1"


@dataclass(frozen=True)
class Delivery:
    event_id: int
    url: str
    body: bytes
    secret: str | None
    number: int = 1  # the attempt this is


@dataclass(frozen=True)
class Outcome:
    status_code: int | None
    error: str | None
    duration_ms: float

    @property
    def delivered(self) -> bool:
        return self.status_code is not None and 200 <= self.status_code < 300

    @property
    def retry(self) -> bool:
        return self.status_code is None or self.status_code in RETRIED


def signature(secret: str, body: bytes) -> str:
    """The X-Aidhub-Signature header's value."""
    return "sha256=" + hmac.new(secret.encode(), body, hashlib.sha256).hexdigest()


class _NoRedirects(urllib.request.HTTPRedirectHandler):
    def redirect_request(self, *args, **kwargs):
        return None  # a redirect is an answer (3xx), not a place to POST the alert again


OPENER = urllib.request.build_opener(_NoRedirects)


def post(delivery: Delivery, timeout: float) -> Outcome:
    """One POST; what came back."""
    headers = {
        "Content-Type": "application/json",
        "User-Agent": USER_AGENT,
        "X-Aidhub-Event": str(delivery.event_id),
        "X-Aidhub-Attempt": str(delivery.number),
    }
    if delivery.secret:
        headers["X-Aidhub-Signature"] = signature(delivery.secret, delivery.body)
    request = urllib.request.Request(delivery.url, data=delivery.body, headers=headers, method="POST")
    start = time.monotonic()
    try:
        with OPENER.open(request, timeout=timeout) as reply:
            reply.read(65536)
            return Outcome(reply.status, None, _ms(start))
    except urllib.error.HTTPError as e:
        return Outcome(e.code, f"HTTP {e.code} {e.reason}", _ms(start))
    except (OSError, ValueError) as e:  # refused, unreachable, timed out, a bad URL
        reason = getattr(e, "reason", None) or e
        return Outcome(None, f"{type(reason).__name__}: {reason}"[:500], _ms(start))


def _ms(start: float) -> float:
    return (time.monotonic() - start) * 1000.0


class Webhooks:
    """`record(delivery, outcome)` stores each attempt; `finish(event_id, delivered)` its end."""

    def __init__(
        self,
        record: Callable[[Delivery, Outcome], None],
        finish: Callable[[int, bool], None],
        attempts: int = 5,
        backoff: float = 1.0,
        timeout: float = 5.0,
        workers: int = 4,
    ):
        self.record, self.finish = record, finish
        self.attempts, self.backoff, self.timeout, self.workers = attempts, backoff, timeout, workers
        self.due: list[tuple[float, int, Delivery]] = []  # a heap: (when, order, delivery)
        self.order = itertools.count()
        self.cond = threading.Condition()
        self.stopping = False
        self.threads: list[threading.Thread] = []

    def start(self) -> None:
        for i in range(self.workers):
            thread = threading.Thread(target=self._loop, name=f"webhook-{i}", daemon=True)
            thread.start()
            self.threads.append(thread)

    def stop(self) -> None:
        """Stop the workers; what is not sent yet stays pending in the database, for the next start."""
        with self.cond:
            self.stopping = True
            self.cond.notify_all()

    def send(self, delivery: Delivery, delay: float = 0.0) -> None:
        with self.cond:
            heapq.heappush(self.due, (time.monotonic() + delay, next(self.order), delivery))
            self.cond.notify()

    def _next(self) -> Delivery | None:
        with self.cond:
            while not self.stopping:
                wait = self.due[0][0] - time.monotonic() if self.due else None
                if wait is not None and wait <= 0:
                    return heapq.heappop(self.due)[2]
                self.cond.wait(wait)
        return None

    def _loop(self) -> None:
        while (delivery := self._next()) is not None:
            try:
                self.attempt(delivery)
            except Exception:  # the database is away for a moment: the event stays pending
                log.exception("Delivering alert event %d to its webhook failed", delivery.event_id)

    def attempt(self, delivery: Delivery) -> Outcome:
        outcome = post(delivery, self.timeout)
        self.record(delivery, outcome)
        if not outcome.delivered and outcome.retry and delivery.number < self.attempts:
            later = Delivery(
                delivery.event_id, delivery.url, delivery.body, delivery.secret, delivery.number + 1
            )
            self.send(later, self.backoff * 2 ** (delivery.number - 1))
        else:
            self.finish(delivery.event_id, outcome.delivered)
            log.log(
                logging.INFO if outcome.delivered else logging.WARNING,
                "alert event %d to %s: %s",
                delivery.event_id,
                delivery.url,
                outcome.error or outcome.status_code,
            )
        return outcome
