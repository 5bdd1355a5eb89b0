"""Calls made straight to a model's endpoint, kept until the hub collects them.

The hub counts what it serves itself; a call that skips the hub is recorded here, off the
request's way (its parts appended to a few lists), and the hub fetches the records from
`POST /aidhub/calls` every second (every few seconds under load). A fetch acknowledges what the
previous one returned, so records stay here until the hub has stored them: while the hub is down they
wait, up to `max_calls` records or `max_bytes` of payload, past which the oldest are dropped and
counted. Each worker process has its own buffer, named by `worker`; the hub acknowledges per worker.

The hub's own calls carry its token (`X-Aidhub-Token`) and are not recorded twice. Without a
token in the environment (a service started by hand) nothing is recorded and the route is absent.

A record costs the server as little as it can on the call's way: in place, between BentoML's own
work, code runs with cold caches and costs several times what it costs timed alone (`python -m
benchmarks directinplace` against `benchmarks.direct_cost`). So BentoML's JSON parsing leaves the
body in the request's ASGI scope (`keep_request_bodies`) rather than the inputs being encoded again;
a call gets its id (`new_prediction_id`, no system call), and its bytes are copied into columns
(`CallBuffer`): no object is kept per record, and no record is ever formatted on its own. A fetch
sends the columns joined, under a JSON header line; the hub splits them (`parse_reply`) and takes
each call's inputs out of its body.

Imports only the standard library and, where the server records, BentoML's JSON parsing and
Starlette (BentoML's own).
"""

from __future__ import annotations

import hmac
import itertools
import json
import os
import secrets
import sys
import time
from array import array
from bisect import bisect_right
from operator import add

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
MAX_REPLY_BYTES = 2 * 1024 * 1024  # one fetch's payloads: sending more would hold the server's loop
BODY_KEY = "aidhub.body"  # where the request's body waits in its ASGI scope (`keep_request_bodies`)
REPLY_FORMAT = 3  # 3: columns (`take`); 2 (older servers): lines of text, the body last; 1: the inputs last
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
        # (value, text) pairs, each read and replaced whole, so threads never mix them up: the first 8
        # characters of the time (the same for 1,024 milliseconds), and the last 16 characters of the
        # 1,024 ids that share the counter's upper 30 bits.
        self.time_head, self.ends = (-1, ""), (-1, ())


_ID_PARTS = _IdParts()


def new_prediction_id(now: float | None = None) -> str:
    """A 26-char ULID (48-bit milliseconds + 80 bits, Crockford base32): sorts by time; the same
    form as the hub's own ids. The 80 bits: this process's 40 random bits and its 40-bit counter,
    so ids are unique across processes (but for a 2**-40 chance per pair) and never repeat in one.
    Most ids are three strings joined, made before: a server busy enough to see a new millisecond
    at nearly every call would otherwise write the time out each time (up to ~0.7 us more)."""
    millis = int((time.time() if now is None else now) * 1000) & (2**48 - 1)
    parts = _ID_PARTS
    known, time_text = parts.time_head
    if known != millis >> 10:
        time_text = _base32(millis >> 10, 4)
        parts.time_head = (millis >> 10, time_text)
    n = next(parts.counter) & (2**40 - 1)
    known, ends = parts.ends
    if known != n >> 10:
        high = parts.process + _base32(n >> 10, 3)
        ends = tuple([high + pair for pair in _PAIRS])
        parts.ends = (n >> 10, ends)
    return time_text + _PAIRS[millis & 1023] + ends[n & 1023]


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
    the server's event loop: the service's routes `add` and the hub's fetch `take` run there.

    A record's parts are copied into columns (its id, the request's and the reply's JSON bytes each
    into a bytearray; its two times and the two sizes into C arrays), and only a call that failed or
    was cut carries a note. No object is kept per record: the call's own objects are freed as if it
    had not been recorded (kept in lists, they took the throughput ratio of `python -m benchmarks
    direct` from 0.953 to 0.931). A fetch joins the columns (`take`): no record is formatted one by
    one on the server."""

    def __init__(self, token: str, payload_cap: int = 16384, max_calls: int = MAX_CALLS,
                 max_bytes: int = MAX_BYTES):  # fmt: skip
        self.token = token
        self._token_bytes = token.encode()
        self.payload_cap, self.max_calls, self.max_bytes = payload_cap, max_calls, max_bytes
        self.worker = secrets.token_hex(6)
        self.dropped = 0
        self._ids = bytearray()  # 26 ASCII characters per record
        self._bodies, self._outputs = bytearray(), bytearray()  # forgotten from the front as they go
        self._times = array("d")  # at, latency_ms: two per record
        self._sizes = array("I")  # body size, reply size: two per record
        self._notes: dict[int, tuple] = {}  # seq -> (truncated, error), for the few that have either
        self._head = 0  # the index in the arrays of the oldest record kept (they shrink lazily)
        self._first = 1  # its seq (seqs count from 1)

    @classmethod
    def from_environment(cls) -> CallBuffer | None:
        token = os.environ.get(TOKEN_ENV, "")
        if not token:
            return None
        return cls(token, int(os.environ.get(PAYLOAD_CAP_ENV) or 16384))

    def direct(self, headers) -> bool:
        """Whether a request was made straight to the server, from its ASGI headers (`scope["headers"]`:
        lower-case names); False when it came through the hub, which logs it itself."""
        for name, value in headers:  # a plain loop: the cheapest way through a handful of headers
            if name == _TOKEN_NAME and hmac.compare_digest(value, self._token_bytes):
                return False
        return True

    def from_hub(self, headers) -> bool:
        """Whether a request (its ASGI headers) came through the hub."""
        return not self.direct(headers)

    @property
    def waiting(self) -> int:
        """How many records are kept."""
        return len(self._ids) // 26

    @property
    def kept_bytes(self) -> int:
        """The payload bytes kept (the bodies and the replies)."""
        return len(self._bodies) + len(self._outputs)

    def add(self, started: float, latency_ms: float, inputs, outputs: bytes | None,
            error: str | None = None, body: bytes | None = None) -> str:  # fmt: skip
        """Record one direct call (`outputs`: the reply's JSON body; `body`: the request's JSON body,
        kept in place of `inputs` where BentoML left it in the scope); returns its prediction id."""
        pid = new_prediction_id(started)
        if body is None:  # the inputs written as a body (a lone surrogate as its JSON escape)
            body = b'{"inputs":%s}' % encode(inputs).encode("utf-8", "backslashreplace")
        outputs = outputs or b""
        cap = self.payload_cap
        if error is not None or len(body) > cap or len(outputs) > cap:
            body, outputs = self._note(body, outputs, error)
        self._ids += pid.encode()
        self._bodies += body
        self._outputs += outputs
        self._times.append(started)
        self._times.append(latency_ms)
        self._sizes.append(len(body))
        self._sizes.append(len(outputs))
        if len(self._ids) > 26 * self.max_calls or len(self._bodies) + len(self._outputs) > self.max_bytes:
            self._drop_oldest()
        return pid

    def _note(self, body: bytes, outputs: bytes, error: str | None) -> tuple[bytes, bytes]:
        """A payload past the cap becomes a marker, and the call is noted as truncated; an error is
        noted (for the record `add` appends next)."""
        cap = self.payload_cap
        cut = len(body) > cap or len(outputs) > cap
        if len(body) > cap:
            body = _marker(len(body))
        if len(outputs) > cap:
            outputs = _marker(len(outputs))
        self._notes[self._first + self.waiting] = (cut, error and error[:ERROR_CAP])
        return body, outputs

    def _drop_oldest(self) -> None:
        """Drop the oldest records past `max_calls` or `max_bytes`, counting them."""
        while self.waiting > self.max_calls or self.kept_bytes > self.max_bytes:
            self._forget(1)
            self.dropped += 1

    def _forget(self, count: int) -> None:
        """Forget the `count` oldest records (a bytearray loses its front in place); the arrays shrink
        once they are half forgotten."""
        end, notes, head = self._first + count, self._notes, self._head
        for seq in [seq for seq in notes if seq < end] if len(notes) < count else range(self._first, end):
            notes.pop(seq, None)
        sizes = self._sizes[2 * head : 2 * (head + count)]
        del self._ids[: 26 * count], self._bodies[: sum(sizes[::2])], self._outputs[: sum(sizes[1::2])]
        self._head += count
        self._first += count
        if self._head * 2 >= len(self._sizes) // 2:
            del self._times[: 2 * self._head], self._sizes[: 2 * self._head]
            self._head = 0

    def take(self, ack: int, limit: int) -> bytes:
        """Forget what the hub acknowledged (seq <= `ack`); the next `limit` records after it, within
        MAX_REPLY_BYTES of payload (at least one): a JSON line {"worker", "last" (the seq to
        acknowledge), "waiting" (records kept, these included), "dropped", "format", "count",
        "notes" {index in this reply: [truncated, error]}}, then the records' columns (`parse_reply`)."""
        if ack >= self._first and self.waiting:
            self._forget(min(ack - self._first + 1, self.waiting))
        waiting, head = self.waiting, self._head
        sizes = self._sizes[2 * head : 2 * (head + min(limit, waiting))]
        totals = list(itertools.accumulate(map(add, sizes[::2], sizes[1::2])))
        count = max(min(1, waiting), bisect_right(totals, MAX_REPLY_BYTES))
        body_sizes, output_sizes = sizes[: 2 * count : 2], sizes[1 : 2 * count : 2]
        first = self._first
        notes = {str(seq - first): note for seq, note in self._notes.items() if seq < first + count}
        head_line = json.dumps({
            "worker": self.worker, "last": max(first - 1 + count, ack), "waiting": waiting,
            "dropped": self.dropped, "format": REPLY_FORMAT, "count": count, "notes": notes,
            "byteorder": sys.byteorder,
        }).encode()  # fmt: skip
        return b"".join([
            head_line, b"\n", self._ids[: 26 * count], self._times[2 * head : 2 * (head + count)].tobytes(),
            body_sizes.tobytes(), output_sizes.tobytes(),
            self._bodies[: sum(body_sizes)], self._outputs[: sum(output_sizes)],
        ])  # fmt: skip


def _marker(size: int) -> bytes:
    return b'{"_truncated":true,"bytes":%d}' % size


def parse_reply(reply: str | bytes) -> tuple[dict, list[list]]:
    """The header and the records (lists of the FIELDS, in their order: text, but for the two times;
    a malformed line of an older server may have fewer) of what `take` returned. A byte that is not
    UTF-8 becomes U+FFFD in its record rather than failing the whole reply; a reply whose columns do
    not add up raises ValueError."""
    data = reply.encode() if isinstance(reply, str) else reply
    head_text, _, rest = data.partition(b"\n")
    head = json.loads(head_text)
    if not isinstance(head, dict):
        raise ValueError(f"a reply whose first line is not a JSON object: {head_text[:100]!r}")
    if int(head.get("format", 1)) < REPLY_FORMAT:  # lines of text, from older servers
        text = rest.decode(errors="replace")
        return head, [line.split("\t", 7) for line in text.split("\n")] if text else []
    return head, _records(head, memoryview(rest))


def _records(head: dict, data: memoryview) -> list[list]:
    count, notes = int(head["count"]), head.get("notes") or {}
    ids = bytes(data[: 26 * count]).decode("ascii", errors="replace")  # a character a byte
    times, sizes = array("d"), array("I")
    times.frombytes(data[26 * count : 42 * count])
    sizes.frombytes(data[42 * count : 50 * count])
    if head.get("byteorder", sys.byteorder) != sys.byteorder:
        times.byteswap()
        sizes.byteswap()
    if len(ids) != 26 * count or len(sizes) != 2 * count or 50 * count + sum(sizes) != len(data):
        raise ValueError(f"a reply of {count} records whose columns do not add up ({len(data)} bytes)")
    offset, records = 50 * count, []
    for i in range(count):
        body = bytes(data[offset : offset + sizes[i]]).decode(errors="replace")
        offset += sizes[i]
        records.append([ids[26 * i : 26 * i + 26], times[2 * i], times[2 * i + 1], "ok", "0", "", "", body])
    for record, size in zip(records, sizes[count:], strict=True):
        record[6] = bytes(data[offset : offset + size]).decode(errors="replace")
        offset += size
    for index, (truncated, error) in notes.items():
        if not 0 <= int(index) < count:
            raise ValueError(f"a note on record {index} of {count}")
        record = records[int(index)]
        error = json.dumps(error) if error else ""
        record[3:6] = ["error" if error else "ok", "1" if truncated else "0", error]
    return records


def keep_request_bodies() -> None:
    """Make BentoML's JSON parsing leave each request's body (bytes) in its ASGI scope under BODY_KEY,
    where the service's route reads it (`ctx.request` is another Request on the same scope).

    `JSONSerde.parse_request` is replaced, not wrapped: a wrapper's frame on every call cost a recorded
    call more than copying its body. The replacement does what BentoML's does for a body that is not a
    file's URL (read, then `deserialize_model`), without its two imports per call, and hands a model with
    file fields (where a body may be a URL to download) to BentoML's own. Only while BentoML's method
    still has the shape it copies (`_PARSE_NAMES`); otherwise calls record their parsed inputs. The
    service installs it whether it records or not, so recording is compared with the same parsing."""
    try:
        from _bentoml_impl.serde import JSONSerde, Payload
        from _bentoml_sdk.io_models import IORootModel
    except ImportError:
        return
    parse = JSONSerde.parse_request
    code = getattr(parse, "__code__", None)
    if getattr(parse, "keeps_body", False) or code is None or not _PARSE_NAMES <= set(code.co_names):
        return
    with_files: dict[type, bool] = {}  # model class -> whether it has file fields (BentoML's own parses)

    async def parse_request(self, request, cls):
        files = with_files.get(cls)
        if files is None:
            files = with_files[cls] = bool(issubclass(cls, IORootModel) and cls.multipart_fields)
        body = await request.body()  # kept by the Request too: BentoML's own reads it again
        request.scope[BODY_KEY] = body
        if files:
            return await parse(self, request, cls)
        return self.deserialize_model(Payload((body,), metadata=request.headers), cls)

    parse_request.keeps_body = True
    JSONSerde.parse_request = parse_request


# What BentoML's JSONSerde.parse_request does, by the names it uses: what `keep_request_bodies` copies.
_PARSE_NAMES = {"body", "IORootModel", "multipart_fields", "is_http_url", "deserialize_model", "Payload"}


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
        return Response(buffer.take(ack, limit), media_type="application/octet-stream")

    return Starlette(routes=[Route("/calls", calls, methods=["POST"])])
