"""Calls made straight to a model's server: the server's buffer and how the hub reads its records.
(The whole path, a real server and a real hub stopped and started again, is in test_end_to_end.py.)"""

from __future__ import annotations

import asyncio
import json
import os
import stat
import sys
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from types import SimpleNamespace

import pytest

from hub.collector import BUSY_INTERVAL_S, BUSY_RECORDS, Collector, report_token, row_of
from hub.errors import ModelFailed
from monitor.metrics import Metrics
from monitor.predlog import FIELDS as ROW_FIELDS
from monitor.predlog import PredictionLog
from monitor.predlog import new_prediction_id as hub_prediction_id
from monitor.scorecard import totals_by_version
from monitor.tables import Prediction
from registry.models import DeploymentRow, ModelRow, VersionRow
from runners.flavors import calls
from runners.flavors.calls import FIELDS, CallBuffer, new_prediction_id, parse_reply
from tests.postgres import _free_port
from vocab.states import DeploymentStatus

VERSION = (7, "iris", "1.0.0")  # id, model, version


def take(buffer: CallBuffer, ack: int, limit: int) -> dict:
    """What the hub gets from POST /aidhub/calls, parsed (each record a dict of FIELDS)."""
    head, calls = parse_reply(buffer.take(ack, limit))
    return {**head, "calls": [dict(zip(FIELDS, fields, strict=True)) for fields in calls]}


def inputs_of(call: dict):
    """The inputs a record's body holds."""
    return json.loads(call["body"])["inputs"]


def record_of(
    call: dict, payload_cap: int = 16384, line_format: int = calls.LINE_FORMAT
) -> SimpleNamespace | None:
    """The log row the hub makes of a record, its columns by name; None when it is malformed."""
    row = row_of(VERSION, [call[f] for f in FIELDS], time.time(), payload_cap, line_format)
    return (
        None if row is None else SimpleNamespace(**{f.name: v for f, v in zip(ROW_FIELDS, row, strict=True)})
    )


def test_the_server_makes_ids_of_the_hubs_form_and_order():
    now = time.time()
    mine, hubs = new_prediction_id(now), hub_prediction_id(now)
    assert len(mine) == 26 and mine[:10] == hubs[:10]  # the same 48-bit time, the same alphabet
    assert new_prediction_id(now) < new_prediction_id(now + 0.002)


def test_ids_made_without_a_system_call_are_unique_ordered_and_differ_in_a_forked_child():
    now = time.time()
    ids = [new_prediction_id(now) for _ in range(100_000)]  # one millisecond: the counter tells them apart
    assert len(set(ids)) == len(ids) and ids == sorted(ids)
    reader, writer = os.pipe()
    child = os.fork()
    if child == 0:  # a worker process forked after import: its own random part
        os.write(writer, new_prediction_id(now).encode())
        os._exit(0)
    os.waitpid(child, 0)
    theirs = os.read(reader, 26).decode()
    assert theirs[:10] == ids[0][:10] and theirs[10:18] != ids[0][10:18]


def test_payloads_past_the_cap_become_a_marker_of_their_utf8_size():
    buffer = CallBuffer("secret", payload_cap=100)
    buffer.add(time.time(), 1.0, {"x": [1, 2]}, b'{"y":"' + "é".encode() * 50 + b'"}')
    buffer.add(time.time(), 1.0, {"x": "é" * 100}, b"{}")
    within, past = take(buffer, 0, 10)["calls"]
    assert (within["body"], within["truncated"]) == (
        '{"inputs":{"x":[1,2]}}',
        "1",
    )  # its reply was past the cap
    assert json.loads(within["outputs"]) == {"_truncated": True, "bytes": 108}
    assert json.loads(past["body"]) == {"_truncated": True, "bytes": 219} and past["truncated"] == "1"


def test_calls_that_declare_their_size_wait_to_be_written_together_and_a_fetch_writes_them():
    buffer = CallBuffer("secret")
    ids = [buffer.add(time.time(), 1.0, {"x": i}, b"{}", size=20) for i in range(calls.PENDING_CALLS - 1)]
    assert len(buffer._pending) == calls.PENDING_CALLS - 1 and not buffer._ends  # none written yet
    assert [c["id"] for c in take(buffer, 0, 1000)["calls"]] == ids  # the fetch writes them first
    buffer.add(time.time(), 1.0, {"x": 1}, b"{}", size=20)
    buffer.add(time.time(), 1.0, {"x": 2}, b"{}")  # no size declared (chunked): written at once
    assert not buffer._pending and len(buffer._ends) == calls.PENDING_CALLS + 1
    buffer.add(time.time(), 1.0, {"x": 3}, b"{}", size=calls.PENDING_BYTES + 1)  # past the bytes bound
    assert not buffer._pending
    for i in range(calls.PENDING_CALLS):
        buffer.add(time.time(), 1.0, {"x": i}, b"{}", size=20)
    assert not buffer._pending  # the last made calls.PENDING_CALLS
    assert [inputs_of(c)["x"] for c in take(buffer, 0, 1000)["calls"]][-3:] == [61, 62, 63]


def test_text_json_cannot_encode_as_utf8_is_kept_as_its_escape():
    buffer = CallBuffer("secret")
    buffer.add(time.time(), 1.0, {"name": "a\ud800b"}, b"{}")  # a lone surrogate: valid in JSON text
    assert inputs_of(take(buffer, 0, 1)["calls"][0]) == {"name": "a\ud800b"}


def test_records_wait_until_acknowledged_then_go():
    buffer = CallBuffer("secret")
    ids = [buffer.add(time.time(), 1.5, {"x": i}, b'{"y": %d}' % i) for i in range(5)]
    first = take(buffer, 0, 3)
    assert [c["id"] for c in first["calls"]] == ids[:3] and first["last"] == 3 and first["waiting"] == 5
    again = take(buffer, 0, 3)  # not acknowledged (the hub failed to store them): sent again
    assert [c["id"] for c in again["calls"]] == ids[:3]
    rest = take(buffer, first["last"], 10)
    assert [c["id"] for c in rest["calls"]] == ids[3:] and rest["waiting"] == 2
    assert take(buffer, rest["last"], 10)["calls"] == []


def test_a_reply_holds_at_most_max_reply_bytes_of_records_but_always_one(monkeypatch):
    monkeypatch.setattr(calls, "MAX_REPLY_BYTES", 3000)
    buffer = CallBuffer("secret")
    ids = [buffer.add(time.time(), 1.0, {"x": [10 + i] * 400}, b"{}") for i in range(6)]  # ~1.3 KB a line
    first = take(buffer, 0, 100)
    assert [c["id"] for c in first["calls"]] == ids[:2] and first["waiting"] == 6
    rest = take(buffer, first["last"], 100)
    assert [c["id"] for c in rest["calls"]] == ids[2:4] and rest["waiting"] == 4
    big = buffer.add(time.time(), 1.0, {"x": [7] * 3000}, b"{}")  # one line past the limit alone
    assert [c["id"] for c in take(buffer, rest["last"] + 2, 100)["calls"]] == [big]


def test_beyond_the_bound_the_oldest_are_dropped_and_counted():
    buffer = CallBuffer("secret", max_calls=100)
    for i in range(130):
        buffer.add(time.time(), 1.0, {"x": i}, None, error="boom")
    reply = take(buffer, 0, 1000)
    assert reply["dropped"] == 30 and len(reply["calls"]) == 100
    assert inputs_of(reply["calls"][0]) == {"x": 30}
    assert reply["calls"][0]["status"] == "error"
    assert record_of(reply["calls"][0]).error == "boom"


def test_only_the_hubs_token_marks_a_call_as_the_hubs_and_others_say_their_size():
    buffer = CallBuffer("secret")
    raw = [(b"host", b"127.0.0.1"), (b"content-type", b"application/json")]  # a request's, as ASGI has them
    assert buffer.from_hub([*raw, (b"x-aidhub-token", b"secret")])
    assert buffer.direct([(b"content-length", b"49"), (b"x-aidhub-token", b"secret")]) is None
    for token in (b"secreT", b"", b"secret "):
        assert not buffer.from_hub([*raw, (b"x-aidhub-token", token)])
    assert buffer.direct([*raw, (b"content-length", b"49")]) == 49
    assert buffer.direct(raw) == 0 and buffer.direct([(b"content-length", b"-1")]) == 0  # none declared


def test_no_token_in_the_environment_no_buffer(monkeypatch):
    monkeypatch.delenv("AIDHUB_REPORT_TOKEN", raising=False)
    assert CallBuffer.from_environment() is None
    monkeypatch.setenv("AIDHUB_REPORT_TOKEN", "t")
    monkeypatch.setenv("AIDHUB_LOG_PAYLOAD_BYTES", "64")
    assert CallBuffer.from_environment().payload_cap == 64


def test_a_record_becomes_a_direct_prediction_of_the_version():
    buffer = CallBuffer("secret")
    buffer.add(time.time(), 2.5, {"features": [[1.0, 2.0]]}, b'{"label":[1]}')
    call = take(buffer, 0, 1)["calls"][0]
    rec = record_of(call)
    assert (rec.id, rec.version_id, rec.model, rec.version) == (call["id"], 7, "iris", "1.0.0")
    assert (rec.source, rec.status, rec.latency_ms, rec.truncated) == ("direct", "ok", 2.5, False)
    assert (rec.inputs, rec.outputs) == ('{"features":[[1.0,2.0]]}', '{"label":[1]}')  # stored as sent


def test_a_payload_past_the_cap_is_stored_as_a_marker_and_the_call_marked_truncated():
    buffer = CallBuffer("secret", payload_cap=64)
    buffer.add(time.time(), 1.0, {"pixels": [0.5] * 100}, b'{"label":[1]}')
    rec = record_of(take(buffer, 0, 1)["calls"][0])
    assert json.loads(rec.inputs) == {"_truncated": True, "bytes": 423} and rec.truncated  # the body's
    buffer.add(time.time(), 1.0, {"x": 1}, b'{"label":[%s]}' % b",".join([b"1"] * 40))  # a big reply
    buffer.add(time.time(), 1.0, {"x": 1}, b'{"label":[1,2,3,4,5,6,7,8,9]}')  # past cap / 4, within the cap
    big, small = (record_of(call) for call in take(buffer, 1, 10)["calls"])
    assert json.loads(big.outputs) == {"_truncated": True, "bytes": 91} and big.truncated
    assert json.loads(small.outputs) == {"label": [1, 2, 3, 4, 5, 6, 7, 8, 9]} and not small.truncated


@pytest.mark.parametrize(
    "change",
    [
        {"id": "../../etc"},
        {"id": "01M8WFKHZXA2RDBF6E4N3CH1KI"},  # I: not in the ULID alphabet
        {"body": '{"inputs":{"x":"\x00"}}'},  # a raw NUL, which PostgreSQL refuses in text
        {"status": "maybe"},
        {"at": "1e20"},
        {"latency_ms": "slow"},
        {"body": ""},
        {"body": "{"},
        {"body": '{"x": 1}'},  # a body without inputs
        {"body": '[{"inputs": {}}]'},
        {"body": '{"inputs":' + "[" * 100_000 + "]" * 100_000 + "}"},  # too deep to parse: skipped, no crash
        {"error": "not json"},
    ],
)
def test_a_malformed_record_is_skipped_not_stored(change):
    good = {"id": new_prediction_id(), "at": repr(time.time()), "latency_ms": "1.0", "status": "ok",
            "truncated": "0", "error": "", "body": '{"inputs":{}}', "outputs": ""}  # fmt: skip
    assert record_of(good) is not None
    assert record_of(good | change) is None


def test_the_report_token_is_made_once_and_kept_private(tmp_path):
    token = report_token(tmp_path)
    assert len(token) >= 40 and report_token(tmp_path) == token
    assert stat.S_IMODE(os.stat(tmp_path / "report-token").st_mode) == 0o600


def test_a_stored_payload_that_does_not_parse_is_left_out_of_drift(db):
    from monitor import driftruns
    from monitor.predlog import JSONText, PredictionRecord

    with PredictionLog(db) as log:
        log.write_now([
            PredictionRecord(7, "iris", "1.0.0", 1.0, source="direct", inputs=JSONText(text))
            for text in ('{"x": [1]}', "{", '{"x": [2]}')
        ])  # fmt: skip
    assert sorted(p["x"] for p in driftruns.first_payloads(7, 10).inputs) == [[1], [2]]


def test_tabs_newlines_and_unicode_in_payloads_and_errors_survive_the_line_format():
    buffer = CallBuffer("secret")
    inputs = {"text": ["a\tb\nc", "é ✓ \u2028"]}
    buffer.add(time.time(), 1.0, inputs, b'{"upper":["A\\tB\\nC"]}')
    buffer.add(time.time(), 1.0, inputs, None, error="line one\n\tline two")
    ok, failed = (record_of(c) for c in take(buffer, 0, 10)["calls"])
    assert json.loads(ok.inputs) == inputs and json.loads(ok.outputs) == {"upper": ["A\tB\nC"]}
    assert failed.error == "line one\n\tline two" and failed.outputs is None


def test_a_request_body_kept_as_it_came_is_sent_on_one_line_and_stored_as_its_inputs():
    buffer = CallBuffer("secret")
    body = b'{\n\t"inputs": {"text": ["a\\tb \xc3\xa9"], "x": [1,\t2.50]},\n\t"note": 1\n}'
    buffer.add(time.time(), 1.0, {"x": "parsed"}, b'{"y":1}', body=body)
    call = take(buffer, 0, 1)["calls"][0]  # take: exactly the FIELDS, so no raw tab or newline was left
    assert record_of(call).inputs == '{"text":["a\\tb é"],"x":[1,2.5]}'


def test_bentomls_json_parsing_leaves_the_body_in_the_requests_scope(monkeypatch):
    """What the service's route reads through `ctx.request`, another Request on the same scope."""
    import pydantic
    from _bentoml_impl.serde import JSONSerde
    from starlette.requests import Request

    class Body(pydantic.BaseModel):
        inputs: dict

    monkeypatch.setattr(JSONSerde, "parse_request", JSONSerde.parse_request)  # put back afterwards
    calls.keep_request_bodies()
    patched = JSONSerde.parse_request
    calls.keep_request_bodies()
    assert JSONSerde.parse_request is patched  # wrapped once only
    body, scope = b'{"inputs":\n {"x": [1]}}', {"type": "http", "method": "POST", "headers": []}

    async def receive():
        return {"type": "http.request", "body": body, "more_body": False}

    parsed = asyncio.run(JSONSerde().parse_request(Request(scope, receive), Body))
    assert parsed.inputs == {"x": [1]} and scope[calls.BODY_KEY] == body


def test_an_older_servers_records_hold_their_inputs_as_written():
    call = {"id": new_prediction_id(), "at": repr(time.time()), "latency_ms": "1.0", "status": "ok",
            "truncated": "0", "error": "", "body": '{"x":[1]}', "outputs": ""}  # fmt: skip
    assert record_of(call, line_format=1).inputs == '{"x":[1]}'


def test_a_byte_that_is_not_utf8_spoils_its_record_not_the_reply():
    head, records = parse_reply(b'{"worker": "w", "last": 1}\nid\t\xff')
    assert head["last"] == 1 and records == [["id", "\ufffd"]]


class BufferServer:
    """The hub's ModelClient seam, answering from a real CallBuffer (what POST /aidhub/calls does),
    or failing like a server that is down."""

    def __init__(self, buffer: CallBuffer):
        self.buffer, self.down, self.fetches = buffer, False, 0

    def direct_calls(self, url: str, ack: dict[str, int], limit: int) -> str:
        if self.down:
            raise ModelFailed(f"The model server at {url} did not answer: connection refused")
        self.fetches += 1
        return self.buffer.take(ack.get(self.buffer.worker, 0), limit)


@contextmanager
def serving(app, at: str):
    """The ASGI `app` served over HTTP at path `at` on a free port, in a thread: the base URL."""
    import uvicorn
    from starlette.applications import Starlette
    from starlette.routing import Mount

    mounted = Starlette(routes=[Mount(at, app)])
    server = uvicorn.Server(uvicorn.Config(mounted, host="127.0.0.1", port=_free_port(), log_level="warning"))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    try:
        while not server.started:
            time.sleep(0.01)
        yield f"http://127.0.0.1:{server.config.port}"
    finally:
        server.should_exit = True
        thread.join(10)


def wait_until_waiting_in(pool: ThreadPoolExecutor, function: str, timeout: float = 10.0) -> None:
    """Until the pool's thread is in `function` (blocked there: on a lock)."""
    (thread,) = pool._threads
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        frame = sys._current_frames().get(thread.ident)
        while frame is not None and frame.f_code.co_name != function:
            frame = frame.f_back
        if frame is not None:
            return
        time.sleep(0.01)
    raise AssertionError(f"the thread did not reach {function}() in {timeout} s")


def serving_version() -> VersionRow:
    model = ModelRow.create(name="iris", task="classification")
    version = VersionRow.create(model=model, version="1.0.0", digest="0" * 64, size=1, manifest={},
                                inputs={}, outputs={})  # fmt: skip
    DeploymentRow.create(version=version, status=DeploymentStatus.READY, url="http://127.0.0.1:9")
    return version


def test_the_collector_stores_then_acknowledges_and_never_counts_a_call_twice(db):
    version, buffer = serving_version(), CallBuffer("secret")
    ids = [
        buffer.add(time.time(), 2.0, {"x": i}, b'{"y":1}', error="boom" if i == 0 else None) for i in range(3)
    ]
    server = BufferServer(buffer)
    with PredictionLog(db) as log:
        assert Collector(server, log, Metrics()).collect() == 3  # fetched, stored; not yet acknowledged
        assert take(buffer, 0, 10)["waiting"] == 3
        restarted = Metrics()  # a hub that stored them but died before it acknowledged
        again = Collector(server, log, restarted)
        assert again.collect() == 3 and again.collect() == 0  # sent again, stored once; then acknowledged
        counted = [
            restarted.predictions.labels("iris", "1.0.0", s, "direct")._value.get() for s in ("ok", "error")
        ]
        assert counted == [0, 0]  # not new: its counters (seeded from the rollups) hold them already
    assert take(buffer, 0, 10)["waiting"] == 0
    assert sorted(p.id for p in Prediction.select()) == sorted(ids)
    totals = totals_by_version([version.id])[version.id]
    assert (totals["requests"], totals["direct"], totals["direct_errors"]) == (3, 3, 1)


def test_a_busy_round_spaces_the_next_rounds_and_a_server_that_is_down_is_retried_later(db):
    serving_version()
    buffer, now = CallBuffer("secret"), [1000.0]
    server = BufferServer(buffer)
    with PredictionLog(db) as log:
        collector = Collector(server, log, Metrics(), clock=lambda: now[0])
        for _ in range(BUSY_RECORDS):
            buffer.add(time.time(), 1.0, {"x": 1}, b"{}")
        assert collector.run_once() == BUSY_RECORDS
        buffer.add(time.time(), 1.0, {"x": 2}, b"{}")
        now[0] += 1.0
        assert collector.run_once() == 0 and server.fetches == 1  # a busy round: the next waits
        now[0] += BUSY_INTERVAL_S - 1.0
        assert collector.run_once() == 1 and server.fetches == 2
        now[0] += 1.0
        server.down = True
        assert collector.run_once() == 0 and collector.failures  # tried, failed: backs off
        buffer.add(time.time(), 1.0, {"x": 3}, b"{}")
        server.down = False
        assert collector.run_once() == 0 and server.fetches == 2  # within the backoff: not tried
        now[0] += 1.0
        assert collector.run_once() == 1  # kept by the server, collected once it answers


def test_feedback_finds_a_direct_call_stored_by_the_round_its_collection_waited_for(hub, publish):
    """Feedback on an id not stored yet collects what the servers hold; when the loop's round (which
    held the lock) stored the call meanwhile, that collection stores nothing, and the id is found.
    A real server's collect route over HTTP, the hub's own collector, lock and database."""
    publish(name="iris")
    version = VersionRow.select().join(ModelRow).where(ModelRow.name == "iris").get()
    buffer = CallBuffer(report_token(hub.config.home))
    with serving(calls.collect_app(buffer), at=calls.ROUTE_PREFIX) as url, ThreadPoolExecutor(1) as pool:
        DeploymentRow.create(version=version, status=DeploymentStatus.READY, url=url)
        with hub.collector.lock:  # the loop's round holds it from before the call is made
            pid = buffer.add(time.time(), 1.0, {"x": 1}, b'{"y":1}')
            answer = pool.submit(hub.feedback, pid, {"correct": True})
            wait_until_waiting_in(pool, "collect")
            assert hub.collector._collect_from(url, version) == 1  # the round's work, under its lock
        assert answer.result(30)["correct"] is True
