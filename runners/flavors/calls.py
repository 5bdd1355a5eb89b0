"""Calls made straight to a model's endpoint, kept until the hub collects them.

The hub counts what it serves itself; a call that skips the hub is recorded here, off the
request's way (a deque append), and the hub fetches the records from `POST /aidhub/calls` every
second. A fetch acknowledges what the previous one returned, so records stay here until the hub has
stored them: while the hub is down they wait, up to `max_calls` records or `max_bytes` of payload,
past which the oldest are dropped and counted. Each worker process has its own buffer, named by
`worker`; the hub acknowledges per worker.

The hub's own calls carry its token (`X-Aidhub-Token`) and are not recorded twice. Without a
token in the environment (a service started by hand) nothing is recorded and the route is absent.

A record costs the request about 8 us: it is one line of text, made once (`FIELDS`, tab-separated;
the payloads are JSON, which never holds a raw tab or newline), and a fetch is those lines joined
under a JSON header line. The hub stores the payload text as it is.

Imports only the standard library and, where the route is served, Starlette (BentoML's own).
"""

from __future__ import annotations

import hmac
import json
import os
import secrets
import threading
import time
from collections import deque
from itertools import islice

TOKEN_ENV = "AIDHUB_REPORT_TOKEN"
PAYLOAD_CAP_ENV = "AIDHUB_LOG_PAYLOAD_BYTES"
TOKEN_HEADER = "x-aidhub-token"
ROUTE_PREFIX = "/aidhub"
COLLECT_ROUTE = ROUTE_PREFIX + "/calls"
MAX_CALLS = 50_000  # 8 minutes at 100 calls/s
MAX_BYTES = 128 * 1024 * 1024
ERROR_CAP = 2000
CROCKFORD = "0123456789ABCDEFGHJKMNPQRSTVWXYZ"
FIELDS = ("id", "at", "latency_ms", "status", "truncated", "error", "outputs", "inputs")
_ENCODER = json.JSONEncoder(ensure_ascii=False, separators=(",", ":"), default=str)


def new_prediction_id(now: float | None = None) -> str:
    """A 26-char ULID (48-bit milliseconds + 80 random bits, Crockford base32): sorts by time.
    The same form as the hub's own ids."""
    millis = int((time.time() if now is None else now) * 1000) & (2**48 - 1)
    value = millis << 80 | secrets.randbits(80)
    return "".join(CROCKFORD[(value >> shift) & 31] for shift in range(125, -1, -5))


def capped(text: str, cap: int) -> tuple[str, bool]:
    """(JSON `text`, False), or a `{"_truncated": true, "bytes": N}` marker and True past `cap` bytes."""
    if len(text) <= cap // 4 or len(text.encode()) <= cap:
        return text, False
    return json.dumps({"_truncated": True, "bytes": len(text.encode())}), True


def capped_json(value, cap: int) -> tuple[str, bool]:
    """`value` as JSON text, capped (see `capped`)."""
    return capped(_ENCODER.encode(value), cap)


class CallBuffer:
    """Records of direct calls, oldest first, numbered per worker process."""

    def __init__(self, token: str, payload_cap: int = 16384, max_calls: int = MAX_CALLS,
                 max_bytes: int = MAX_BYTES):  # fmt: skip
        self.token = token
        self.payload_cap, self.max_calls, self.max_bytes = payload_cap, max_calls, max_bytes
        self.worker = secrets.token_hex(6)
        self.dropped = 0
        self._rows: deque[tuple[int, int, str]] = deque()  # (seq, bytes, the record as JSON)
        self._seq = self._bytes = 0
        self._lock = threading.Lock()

    @classmethod
    def from_environment(cls) -> CallBuffer | None:
        token = os.environ.get(TOKEN_ENV, "")
        if not token:
            return None
        return cls(token, int(os.environ.get(PAYLOAD_CAP_ENV) or 16384))

    def from_hub(self, headers) -> bool:
        """Whether a request came through the hub (which logs it itself)."""
        given = headers.get(TOKEN_HEADER, "")
        return bool(given) and hmac.compare_digest(given, self.token)

    def add(self, started: float, latency_ms: float, inputs, outputs: bytes | None,
            error: str | None = None) -> str:  # fmt: skip
        """Record one direct call (`outputs`: the reply's JSON body); returns its prediction id."""
        pid = new_prediction_id(started)
        inputs_text, cut_in = capped_json(inputs, self.payload_cap)
        outputs_text, cut_out = capped(outputs.decode(), self.payload_cap) if outputs else (None, False)
        status, error_text = ("error", json.dumps(error[:ERROR_CAP])) if error else ("ok", "")
        cut = "1" if cut_in or cut_out else "0"
        record = "\t".join(
            (
                pid,
                repr(started),
                f"{latency_ms:.3f}",
                status,
                cut,
                error_text,
                outputs_text or "",
                inputs_text,
            )
        )  # FIELDS
        size = len(record)
        with self._lock:  # text, not dicts: kept records cost the garbage collector nothing
            self._seq += 1
            self._rows.append((self._seq, size, record))
            self._bytes += size
            while len(self._rows) > self.max_calls or self._bytes > self.max_bytes:
                self._bytes -= self._rows.popleft()[1]
                self.dropped += 1
        return pid

    def take(self, ack: int, limit: int) -> str:
        """Forget what the hub acknowledged (seq <= `ack`); the next `limit` records after it: a
        JSON line {"worker", "last" (the seq to acknowledge), "waiting", "dropped"}, then a line each."""
        with self._lock:
            while self._rows and self._rows[0][0] <= ack:
                self._bytes -= self._rows.popleft()[1]
            rows = list(islice(self._rows, limit))
            waiting, dropped = len(self._rows), self.dropped
        last = rows[-1][0] if rows else ack
        head = json.dumps({"worker": self.worker, "last": last, "waiting": waiting, "dropped": dropped})
        return "\n".join([head, *(record for _, _, record in rows)])


def parse_reply(text: str) -> tuple[dict, list[dict]]:
    """The header and the records (dicts of FIELDS, all text) of what `take` returned."""
    head, *lines = text.split("\n")
    return json.loads(head), [dict(zip(FIELDS, line.split("\t", 7), strict=True)) for line in lines]


def collect_app(buffer: CallBuffer):
    """The ASGI app of `POST /aidhub/calls` {"ack": {worker: seq}, "limit": n}, token required."""
    from starlette.applications import Starlette
    from starlette.requests import Request
    from starlette.responses import JSONResponse, Response
    from starlette.routing import Route

    async def calls(request: Request) -> Response:
        given = request.headers.get("authorization", "").removeprefix("Bearer ")
        if not hmac.compare_digest(given, buffer.token):
            return JSONResponse({"error": "A valid hub token is needed."}, status_code=401)
        try:
            body = json.loads(await request.body() or b"{}")
            ack = int((body.get("ack") or {}).get(buffer.worker, 0))
            limit = max(1, min(int(body.get("limit", 5000)), 20_000))
        except (ValueError, TypeError, AttributeError):
            return JSONResponse({"error": 'Send {"ack": {worker: seq}, "limit": n}.'}, status_code=400)
        return Response(buffer.take(ack, limit), media_type="text/plain")

    return Starlette(routes=[Route("/calls", calls, methods=["POST"])])
