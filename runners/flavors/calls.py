"""Calls made straight to a model's endpoint, kept until the hub collects them.

The hub counts what it serves itself; a call that skips the hub is recorded here, off the
request's way (a line in a buffer), and the hub fetches the records from `POST /aidhub/calls` every
second (every few seconds under load). A fetch acknowledges what the previous one returned, so
records stay here until the hub has stored them: while the hub is down they wait, up to `max_calls`
records or `max_bytes` of payload, past which the oldest are dropped and counted. Each worker
process has its own buffer, named by `worker`; the hub acknowledges per worker.

The hub's own calls carry its token (`X-Aidhub-Token`) and are not recorded twice. Without a
token in the environment (a service started by hand) nothing is recorded and the route is absent.

A record costs the server as little as it can on the call's way: in place, between BentoML's own
work, code runs with cold caches, and a record costs ~14-16 us of CPU a call there (iris,
`python -m benchmarks directinplace`) against ~2 us timed alone (`benchmarks.direct_cost`); writing
each call's line on its own way cost ~6 us more, and encoding the parsed inputs again more still.
So BentoML's JSON parsing leaves the body in the request's ASGI scope (`keep_request_bodies`), a
call gets its id (`new_prediction_id`, no system call) and waits in a list with that body (bytes,
which the garbage collector never walks); every PENDING_CALLS calls, or at the hub's fetch, the
waiting calls are written in one loop, a line of text each (`FIELDS`, tab-separated; JSON holds a
raw tab or newline only as a blank, written as a space) appended to one bytearray. The fetch sends
the lines as they are under a JSON header line; the hub takes each call's inputs out of its body.

Imports only the standard library and, where the server records, BentoML's JSON parsing and
Starlette (BentoML's own).
"""

from __future__ import annotations

import hmac
import inspect
import itertools
import json
import os
import secrets
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
BODY_KEY = "aidhub.body"  # where the request's body waits in its ASGI scope (`keep_request_bodies`)
LINE_FORMAT = 2  # 2: the last field is the request's body {"inputs": ...}; 1 (older servers): the inputs
PENDING_CALLS, PENDING_BYTES = 64, 1024 * 1024  # calls waiting to be written as lines, their bodies
ERROR_CAP = 2000
CROCKFORD = "0123456789ABCDEFGHJKMNPQRSTVWXYZ"
FIELDS = ("id", "at", "latency_ms", "status", "truncated", "error", "outputs", "body")
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
        # The text of the time's upper 28 bits (they change every 17 minutes) and of the counter's
        # upper 30 bits (with the process's part), as (value, text) pairs: read and replaced whole,
        # so threads never mix them up.
        self.upper, self.high = (-1, ""), (-1, "")


_ID_PARTS = _IdParts()


def new_prediction_id(now: float | None = None) -> str:
    """A 26-char ULID (48-bit milliseconds + 80 bits, Crockford base32): sorts by time; the same
    form as the hub's own ids. The 80 bits: this process's 40 random bits and its 40-bit counter,
    so ids are unique across processes (but for a 2**-40 chance per pair) and never repeat in one."""
    millis = int((time.time() if now is None else now) * 1000) & (2**48 - 1)
    parts = _ID_PARTS
    n = next(parts.counter) & (2**40 - 1)
    known, upper_text = parts.upper
    if known != millis >> 20:
        upper_text = _base32(millis >> 20, 3)  # the first 6 of the time's 10 characters
        parts.upper = (millis >> 20, upper_text)
    known, high_text = parts.high
    if known != n >> 10:
        high_text = parts.process + _base32(n >> 10, 3)
        parts.high = (n >> 10, high_text)
    return f"{upper_text}{_PAIRS[(millis >> 10) & 1023]}{_PAIRS[millis & 1023]}{high_text}{_PAIRS[n & 1023]}"


def encode(value) -> str:
    """`value` as compact JSON text (non-ASCII kept; what JSON cannot hold as its str())."""
    if _C_ENCODE is not None:
        try:
            return "".join(_C_ENCODE(value, 0))
        except (RecursionError, ValueError):
            pass  # a value that holds itself: the encoder that checks says so
    return _ENCODER.encode(value)


class CallBuffer:
    """Records of direct calls, oldest first, numbered per worker process. Used from one thread,
    the server's event loop: the service's routes `add` and the hub's fetch `take` run there."""

    def __init__(self, token: str, payload_cap: int = 16384, max_calls: int = MAX_CALLS,
                 max_bytes: int = MAX_BYTES):  # fmt: skip
        self.token = token
        self._token_bytes = token.encode()
        self.payload_cap, self.max_calls, self.max_bytes = payload_cap, max_calls, max_bytes
        self.worker = secrets.token_hex(6)
        self.dropped = 0
        # Each record becomes its line in one bytearray, and `_ends` (a C array) says where each line
        # ends: the kept records are no Python objects, and the hub's fetch is one slice of bytes.
        self._data = bytearray()
        self._ends = array("q")
        self._head = 0  # the index in `_ends` of the oldest record kept
        self._first = 1  # its seq (seqs count from 1)
        self._pending: list[tuple] = []  # calls not yet written as lines (`add`)
        self._pending_bytes = 0

    @classmethod
    def from_environment(cls) -> CallBuffer | None:
        token = os.environ.get(TOKEN_ENV, "")
        if not token:
            return None
        return cls(token, int(os.environ.get(PAYLOAD_CAP_ENV) or 16384))

    def direct(self, headers) -> int | None:
        """Whether a request was made straight to the server, from its ASGI headers (`scope["headers"]`:
        lower-case names): None when it came through the hub (which logs it itself), else the size its
        body declares (Content-Length; 0 when it declares none), which `add` is given."""
        size = 0
        for name, value in headers:  # a plain loop: the cheapest way through a handful of headers
            if name == _TOKEN_NAME:
                if hmac.compare_digest(value, self._token_bytes):
                    return None
            elif name == b"content-length" and value.isdigit():
                size = int(value)
        return size

    def from_hub(self, headers) -> bool:
        """Whether a request (its ASGI headers) came through the hub."""
        return self.direct(headers) is None

    def add(self, started: float, latency_ms: float, inputs, outputs: bytes | None,
            error: str | None = None, size: int = 0, body: bytes | None = None) -> str:  # fmt: skip
        """Record one direct call (`outputs`: the reply's JSON body; `size`: what `direct` said; `body`:
        the request's JSON body, kept in place of `inputs` where BentoML left it in the scope);
        returns its prediction id. A call whose body declared its size waits as it is, with up to
        PENDING_CALLS others (PENDING_BYTES of bodies), to be written as lines together: one loop
        over many records costs about half as much per record as a line written on each call's way."""
        pid = new_prediction_id(started)
        pending = self._pending
        pending.append((pid, started, latency_ms, inputs if body is None else body, outputs, error))
        self._pending_bytes += size
        if not size or len(pending) >= PENDING_CALLS or self._pending_bytes > PENDING_BYTES:
            self._write_pending()
        return pid

    def _write_pending(self) -> None:
        """The waiting calls as lines, then the oldest dropped past `max_calls` or `max_bytes`."""
        pending, self._pending, self._pending_bytes = self._pending, [], 0
        cap, data, ends = self.payload_cap, self._data, self._ends
        for pid, started, latency_ms, inputs, outputs, error in pending:
            data += _line(pid, started, latency_ms, inputs, outputs, error, cap)
            ends.append(len(data))
        while len(ends) - self._head > self.max_calls or self._kept_bytes() > self.max_bytes:
            self._forget(1)
            self.dropped += 1
            ends = self._ends

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

    def take(self, ack: int, limit: int) -> bytes:
        """Forget what the hub acknowledged (seq <= `ack`); the next `limit` records after it, within
        MAX_REPLY_BYTES (at least one): a JSON line {"worker", "last" (the seq to acknowledge),
        "waiting" (records kept, these included), "dropped"}, then a line each."""
        self._write_pending()
        kept = len(self._ends) - self._head
        if ack >= self._first and kept:
            self._forget(min(ack - self._first + 1, kept))
        waiting = len(self._ends) - self._head
        start, end = self._start(), self._head + min(limit, waiting)
        count = max(
            min(1, waiting), bisect_right(self._ends, start + MAX_REPLY_BYTES, self._head, end) - self._head
        )
        dropped, last = self.dropped, self._first - 1 + count
        head = json.dumps({
            "worker": self.worker, "last": max(last, ack), "waiting": waiting, "dropped": dropped,
            "format": LINE_FORMAT,
        }).encode()  # fmt: skip
        if not count:
            return head
        # One copy of the lines (a view of them joined), not five: a fetch under load moves a
        # megabyte, and each copy of it pushes the worker's own data out of the CPU's caches.
        end = self._ends[self._head + count - 1] - 1  # the last line's newline left out
        return b"".join((head, b"\n", memoryview(self._data)[start:end]))


def _line(pid: str, started: float, latency_ms: float, inputs, outputs: bytes | None, error: str | None,
          cap: int) -> bytes:  # fmt: skip
    """One record as the hub reads it: FIELDS, tab-separated; `inputs`: the request's body (bytes),
    or the parsed inputs, written as a body. A payload past `cap` bytes becomes a marker, and the
    call is marked truncated."""
    if inputs.__class__ is bytes:  # JSON that BentoML parsed: a raw tab or newline is a blank
        text = inputs.translate(_BLANKS)
    else:  # a lone surrogate: its JSON escape
        text = b'{"inputs":%s}' % encode(inputs).encode("utf-8", "backslashreplace")
    cut = len(text) > cap
    if cut:
        text = _marker(len(text))
    if outputs and len(outputs) > cap:
        outputs, cut = _marker(len(outputs)), True
    if error:
        status = b"error\t%d\t%s" % (cut, json.dumps(error[:ERROR_CAP]).encode())
    else:
        status = _CUT if cut else _WHOLE
    # The time to the microsecond: %.6f writes it in about half the time %a (its repr) takes.
    return b"%s\t%.6f\t%.3f\t%s\t%s\t%s\n" % (pid.encode(), started, latency_ms, status, outputs or b"", text)


_WHOLE, _CUT = b"ok\t0\t", b"ok\t1\t"  # a call that succeeded: status, truncated, no error
_BLANKS = bytes.maketrans(b"\t\n", b"  ")


def _marker(size: int) -> bytes:
    return b'{"_truncated":true,"bytes":%d}' % size


def parse_reply(reply: str | bytes) -> tuple[dict, list[list[str]]]:
    """The header and the records (lists of the FIELDS' text, in their order; a malformed line may
    have fewer) of what `take` returned (as the hub reads it: text; a byte that is not UTF-8 becomes
    U+FFFD in its record rather than failing the whole reply)."""
    text = reply.decode(errors="replace") if isinstance(reply, bytes) else reply
    head, *lines = text.split("\n")
    return json.loads(head), [line.split("\t", 7) for line in lines]


def keep_request_bodies() -> None:
    """Make BentoML's JSON parsing leave each request's body (bytes) in its ASGI scope under BODY_KEY,
    where the service's route reads it (`ctx.request` is another Request on the same scope). Only
    while BentoML parses JSON in `JSONSerde.parse_request`; otherwise calls record their parsed inputs."""
    try:
        from _bentoml_impl.serde import JSONSerde
    except ImportError:
        return
    parse = JSONSerde.parse_request
    if getattr(parse, "keeps_body", False) or not inspect.iscoroutinefunction(parse):
        return

    async def parse_request(self, request, cls):
        model = await parse(self, request, cls)
        body = getattr(request, "_body", None)  # what Starlette kept of its read, without a coroutine
        request.scope[BODY_KEY] = body if body.__class__ is bytes else await request.body()
        return model

    parse_request.keeps_body = True
    JSONSerde.parse_request = parse_request


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
