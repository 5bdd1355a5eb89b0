"""Calls made straight to a model's endpoint, kept until the hub collects them.

The hub counts what it serves itself; a call that skips the hub is recorded here, off the
request's way (a line appended to a buffer), and the hub fetches the records from `POST /aidhub/calls` every
second (every few seconds under load). A fetch acknowledges what the previous one returned, so
records stay here until the hub has stored them: while the hub is down they wait, up to `max_calls`
records or `max_bytes` of payload, past which the oldest are dropped and counted. Each worker
process has its own buffer, named by `worker`; the hub acknowledges per worker.

The hub's own calls carry its token (`X-Aidhub-Token`) and are not recorded twice. Without a
token in the environment (a service started by hand) nothing is recorded and the route is absent.

A record costs the request about 4 us of CPU (`python -m benchmarks.direct_cost`): an id without
a system call (`new_prediction_id`), the inputs encoded once by the JSON module's C encoder, and
its line of text (`FIELDS`, tab-separated; the payloads are JSON, which never holds a raw tab or
newline) appended to one bytearray. The fetch sends the lines as they are under a JSON header line;
the hub stores the payload text as it is.

Imports only the standard library and, where the route is served, Starlette (BentoML's own).
"""

from __future__ import annotations

import hmac
import itertools
import json
import os
import secrets
import threading
import time
from array import array
from bisect import bisect_right

try:  # the JSON module's C encoder, built once: json.dumps builds a new one per call (~1 us)
    from json.encoder import c_make_encoder
except ImportError:  # a Python without the _json accelerator
    c_make_encoder = None

TOKEN_ENV = "AIDHUB_REPORT_TOKEN"
PAYLOAD_CAP_ENV = "AIDHUB_LOG_PAYLOAD_BYTES"
TOKEN_HEADER = "x-aidhub-token"
_TOKEN_NAME = TOKEN_HEADER.encode()
ROUTE_PREFIX = "/aidhub"
COLLECT_ROUTE = ROUTE_PREFIX + "/calls"
MAX_CALLS = 50_000  # 8 minutes at 100 calls/s
MAX_BYTES = 128 * 1024 * 1024
MAX_REPLY_BYTES = 2 * 1024 * 1024  # one fetch's lines: sending more would hold the server's loop
ERROR_CAP = 2000
CROCKFORD = "0123456789ABCDEFGHJKMNPQRSTVWXYZ"
FIELDS = ("id", "at", "latency_ms", "status", "truncated", "error", "outputs", "inputs")
_ENCODER = json.JSONEncoder(ensure_ascii=False, separators=(",", ":"), default=str)
_C_ENCODE = c_make_encoder and c_make_encoder(
    None, str, json.encoder.encode_basestring, None, ":", ",", False, False, True
)  # the same settings as _ENCODER, without its check for circular values (inputs parsed from JSON)
_PAIRS = [a + b for a in CROCKFORD for b in CROCKFORD]  # 10 bits -> 2 characters


def _base32(value: int, pairs: int) -> str:
    """`value` (< 2 ** (10 * pairs)) as 2 * `pairs` Crockford characters, most significant first."""
    return "".join([_PAIRS[(value >> shift) & 1023] for shift in range(10 * pairs - 10, -1, -10)])


class _IdParts:
    """What makes this process's ids unique: 40 random bits drawn once per process (again in a
    forked child) and a counter, instead of 80 random bits (a system call) per id."""

    def __init__(self) -> None:
        self.draw()
        os.register_at_fork(after_in_child=self.draw)

    def draw(self) -> None:
        self.process = _base32(secrets.randbits(40), 4)
        self.counter = itertools.count(secrets.randbits(39))  # next() is atomic under the GIL
        # The text of the last millisecond and of the counter's upper 30 bits (with the process's
        # part), as (value, text) pairs: read and replaced whole, so threads never mix them up.
        self.time, self.high = (-1, ""), (-1, "")


_ID_PARTS = _IdParts()


def new_prediction_id(now: float | None = None) -> str:
    """A 26-char ULID (48-bit milliseconds + 80 bits, Crockford base32): sorts by time; the same
    form as the hub's own ids. The 80 bits: this process's 40 random bits and its 40-bit counter,
    so ids are unique across processes (but for a 2**-40 chance per pair) and never repeat in one."""
    millis = int((time.time() if now is None else now) * 1000) & (2**48 - 1)
    parts = _ID_PARTS
    n = next(parts.counter) & (2**40 - 1)
    known, time_text = parts.time
    if known != millis:
        time_text = _base32(millis, 5)
        parts.time = (millis, time_text)
    known, high_text = parts.high
    if known != n >> 10:
        high_text = parts.process + _base32(n >> 10, 3)
        parts.high = (n >> 10, high_text)
    return time_text + high_text + _PAIRS[n & 1023]


def encode(value) -> str:
    """`value` as compact JSON text (non-ASCII kept; what JSON cannot hold as its str())."""
    if _C_ENCODE is not None:
        try:
            return "".join(_C_ENCODE(value, 0))
        except (RecursionError, ValueError):
            pass  # a value that holds itself: the encoder that checks says so
    return _ENCODER.encode(value)


def capped(text: str, cap: int) -> tuple[str, bool]:
    """(JSON `text`, False), or a `{"_truncated": true, "bytes": N}` marker and True past `cap` bytes."""
    if len(text) <= cap // 4 or len(text.encode()) <= cap:
        return text, False
    return json.dumps({"_truncated": True, "bytes": len(text.encode())}), True


def capped_json(value, cap: int) -> tuple[str, bool]:
    """`value` as JSON text, capped (see `capped`)."""
    return capped(encode(value), cap)


class CallBuffer:
    """Records of direct calls, oldest first, numbered per worker process."""

    def __init__(self, token: str, payload_cap: int = 16384, max_calls: int = MAX_CALLS,
                 max_bytes: int = MAX_BYTES):  # fmt: skip
        self.token = token
        self._token_bytes = token.encode()
        self.payload_cap, self.max_calls, self.max_bytes = payload_cap, max_calls, max_bytes
        self.worker = secrets.token_hex(6)
        self.dropped = 0
        # Each record is written at once as its line into one bytearray, and `_ends` (a C array)
        # says where each line ends: no Python object per record outlives its call, and the hub's
        # fetch is one slice of bytes (0.06 us a record; ~1 us formatting lines from kept fields).
        self._data = bytearray()
        self._ends = array("q")
        self._head = 0  # the index in `_ends` of the oldest record kept
        self._first = 1  # its seq (seqs count from 1)
        self._lock = threading.Lock()

    @classmethod
    def from_environment(cls) -> CallBuffer | None:
        token = os.environ.get(TOKEN_ENV, "")
        if not token:
            return None
        return cls(token, int(os.environ.get(PAYLOAD_CAP_ENV) or 16384))

    def from_hub(self, headers) -> bool:
        """Whether a request came through the hub (which logs it itself). `headers`: Starlette's
        (its raw list is read as it is: ASGI header names are lower case) or any mapping."""
        raw = getattr(headers, "raw", None)
        if raw is None:
            given = headers.get(TOKEN_HEADER, "")
            return bool(given) and hmac.compare_digest(given.encode(), self._token_bytes)
        for name, value in raw:  # a plain loop: the cheapest way through a handful of headers
            if name == _TOKEN_NAME:
                return hmac.compare_digest(value, self._token_bytes)
        return False

    def add(self, started: float, latency_ms: float, inputs, outputs: bytes | None,
            error: str | None = None) -> str:  # fmt: skip
        """Record one direct call (`outputs`: the reply's JSON body); returns its prediction id."""
        pid = new_prediction_id(started)
        inputs_text, cut = capped_json(inputs, self.payload_cap)
        reply = outputs.decode() if outputs else ""
        if len(reply) > self.payload_cap // 4:  # a big reply is not kept whole
            reply, cut_out = capped(reply, self.payload_cap)
            cut = cut or cut_out
        line = _line(pid, started, latency_ms, cut, error[:ERROR_CAP] if error else None, reply, inputs_text)
        with self._lock:
            self._data += line
            self._ends.append(len(self._data))
            while len(self._ends) - self._head > self.max_calls or self._kept_bytes() > self.max_bytes:
                self._forget(1)
                self.dropped += 1
        return pid

    def _start(self) -> int:
        """Where the oldest kept record's line starts in `_data`."""
        return self._ends[self._head - 1] if self._head else 0

    def _kept_bytes(self) -> int:
        return len(self._data) - self._start()

    def _forget(self, count: int) -> None:
        """Forget the `count` oldest records; their bytes go once they are half of `_data`."""
        self._head += count
        self._first += count
        start = self._start()
        if start * 2 >= len(self._data):
            del self._data[:start]
            self._ends = array("q", [end - start for end in self._ends[self._head :]])
            self._head = 0

    def take(self, ack: int, limit: int) -> str:
        """Forget what the hub acknowledged (seq <= `ack`); the next `limit` records after it, within
        MAX_REPLY_BYTES (at least one): a JSON line {"worker", "last" (the seq to acknowledge),
        "waiting" (records kept, these included), "dropped"}, then a line each."""
        with self._lock:
            kept = len(self._ends) - self._head
            if ack >= self._first and kept:
                self._forget(min(ack - self._first + 1, kept))
            waiting = len(self._ends) - self._head
            start, end = self._start(), self._head + min(limit, waiting)
            count = max(
                min(1, waiting),
                bisect_right(self._ends, start + MAX_REPLY_BYTES, self._head, end) - self._head,
            )
            lines = bytes(self._data[start : self._ends[self._head + count - 1]]) if count else b""
            dropped, last = self.dropped, self._first - 1 + count
        head = json.dumps(
            {"worker": self.worker, "last": max(last, ack), "waiting": waiting, "dropped": dropped}
        )
        return head + "\n" + lines.decode().removesuffix("\n") if lines else head


def _line(pid: str, started: float, latency_ms: float, cut: bool, error: str | None, outputs: str,
          inputs: str) -> bytes:  # fmt: skip
    """One record as the hub reads it: FIELDS, tab-separated (JSON holds no raw tab or newline)."""
    status, error_text = ("error", json.dumps(error)) if error else ("ok", "")
    head = f"{pid}\t{started!r}\t{latency_ms:.3f}\t{status}\t{'1' if cut else '0'}\t{error_text}"
    return f"{head}\t{outputs}\t{inputs}\n".encode()


def parse_reply(text: str) -> tuple[dict, list[list[str]]]:
    """The header and the records (lists of the FIELDS' text, in their order; a malformed line may
    have fewer) of what `take` returned."""
    head, *lines = text.split("\n")
    return json.loads(head), [line.split("\t", 7) for line in lines]


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
