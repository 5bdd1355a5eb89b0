"""Calls made straight to a model's server: the server's buffer and how the hub reads its records.
(The whole path, a real server and a real hub stopped and started again, is in test_end_to_end.py.)"""

from __future__ import annotations

import asyncio
import json
import os
import random
import stat
import sys
import time
from types import SimpleNamespace

import pytest

from hub.collector import report_token, row_of
from monitor.predlog import FIELDS as ROW_FIELDS
from monitor.predlog import PredictionLog
from monitor.predlog import new_prediction_id as hub_prediction_id
from runners.flavors import calls
from runners.flavors.calls import FIELDS, CallBuffer, new_prediction_id, parse_reply

VERSION = (7, "iris", "1.0.0")  # id, model, version


def take(buffer: CallBuffer, ack: int, limit: int) -> dict:
    """What the hub gets from POST /aidhub/calls, parsed (each record a dict of FIELDS)."""
    head, calls = parse_reply(buffer.take(ack, limit))
    return {**head, "calls": [dict(zip(FIELDS, fields, strict=True)) for fields in calls]}


def inputs_of(call: dict):
    """The inputs a record's body holds."""
    return json.loads(call["body"])["inputs"]


def record_of(
    call: dict, payload_cap: int = 16384, reply_format: int = calls.REPLY_FORMAT
) -> SimpleNamespace | None:
    """The log row the hub makes of a record, its columns by name; None when it is malformed."""
    row = row_of(VERSION, [call[f] for f in FIELDS], time.time(), payload_cap, reply_format)
    return (
        None if row is None else SimpleNamespace(**{f.name: v for f, v in zip(ROW_FIELDS, row, strict=True)})
    )


def test_the_server_makes_ids_of_the_hubs_form_and_order():
    now = time.time()
    mine, hubs = new_prediction_id(now), hub_prediction_id(now)
    assert len(mine) == 26 and mine[:10] == hubs[:10]  # the same 48-bit time, the same alphabet
    assert new_prediction_id(now) < new_prediction_id(now + 0.002)
    times = [now + i * 0.0007 for i in range(5000)]  # across several 1,024 ms spans of the time's head
    assert [new_prediction_id(t)[:10] for t in times] == [hub_prediction_id(t)[:10] for t in times]
    ids = [new_prediction_id(t) for t in times]
    assert ids == sorted(ids)


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


def test_a_reply_is_the_columns_of_its_records_and_one_that_does_not_add_up_is_refused():
    buffer = CallBuffer("secret")
    ids = [
        buffer.add(1e9 + i, 0.5 * i, {"x": i}, b'{"y":%d}' % i, body=b'{"inputs":{"x":%d}}' % i)
        for i in range(3)
    ]
    reply = buffer.take(0, 10)
    head, rest = reply.split(b"\n", 1)
    assert json.loads(head)["count"] == 3 and rest.startswith("".join(ids).encode())
    assert rest.endswith(b'{"inputs":{"x":2}}{"y":0}{"y":1}{"y":2}')  # the bodies, then the replies
    head, records = parse_reply(reply)
    assert [r[:3] for r in records] == [[ids[i], 1e9 + i, 0.5 * i] for i in range(3)]
    for broken in (reply[:-1], reply + b"x", reply.replace(b'"count": 3', b'"count": 4')):
        with pytest.raises(ValueError, match="do not add up"):
            parse_reply(broken)
    with pytest.raises(ValueError, match="not a JSON object"):
        parse_reply(b"[1]\n" + rest)
    with pytest.raises(ValueError, match="a note on record 3 of 3"):
        parse_reply(reply.replace(b'"notes": {}', b'"notes": {"3": [true, null]}'))


def test_lines_from_a_server_of_an_older_hub_are_still_read():
    line = "\t".join(
        [new_prediction_id(), repr(time.time()), "1.5", "ok", "0", "", '{"y":1}', '{"inputs":{"x":1}}']
    )
    head, records = parse_reply(json.dumps({"worker": "w", "last": 1, "format": 2}) + "\n" + line)
    assert record_of(dict(zip(FIELDS, records[0], strict=True)), reply_format=2).inputs == '{"x":1}'
    assert parse_reply(json.dumps({"worker": "w", "last": 0}))[1] == []


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


def test_beyond_the_byte_bound_the_oldest_are_dropped_and_what_the_hub_acknowledged_is_freed():
    buffer = CallBuffer("secret", max_bytes=300)
    for i in range(20):  # 29 bytes of payload each
        buffer.add(time.time(), 1.0, None, b'{"y":%3d}' % i, body=b'{"inputs":{"x":%3d}}' % i)
    reply = take(buffer, 0, 100)
    assert reply["dropped"] == 10 and [inputs_of(c)["x"] for c in reply["calls"]] == list(range(10, 20))
    assert take(buffer, reply["last"], 100)["calls"] == [] and buffer.kept_bytes == 0


def test_a_record_keeps_no_object_of_its_own():
    """Its bytes are copied into the columns: the call's own objects are freed as if it had not been
    recorded (kept, they cost each call more at the socket: `python -m benchmarks direct`)."""
    buffer = CallBuffer("secret")

    def record(i: int) -> None:
        buffer.add(1e9 + i, 1.0, None, b'{"y":%d}' % i, body=b'{"inputs":{"x":%d}}' % i)

    for i in range(100):  # the columns' first growth
        record(i)
    before = sys.getallocatedblocks()
    for i in range(3000):
        record(i)
    assert sys.getallocatedblocks() - before < 1000 and take(buffer, 0, 5000)["waiting"] == 3100


@pytest.mark.parametrize("seed", range(40))
def test_a_fetch_returns_what_was_added_in_order_across_acknowledgements_and_drops(seed):
    rnd = random.Random(seed)
    buffer = CallBuffer(
        "secret", max_calls=rnd.choice([5, 50, 1000]), max_bytes=rnd.choice([300, 5000, 10**6])
    )
    added, ack = [], 0  # (id, body, reply) of every call
    for _ in range(300):
        if rnd.random() < 0.8:
            body = b'{"inputs":{"x":"%s"}}' % (b"a" * rnd.randint(0, 60))
            reply = b'{"y":"%s"}' % (b"b" * rnd.randint(0, 30))
            added.append(
                (buffer.add(time.time(), 1.0, None, reply, body=body), body.decode(), reply.decode())
            )
            continue
        head, records = parse_reply(buffer.take(ack, rnd.randint(1, 40)))
        kept = added[len(added) - head["waiting"] :] if head["waiting"] else []  # the oldest go first
        assert [(r[0], r[7], r[6]) for r in records] == kept[: len(records)]
        ack = head["last"] if rnd.random() < 0.7 else ack  # else the hub failed to store them


def test_only_the_hubs_token_marks_a_call_as_the_hubs():
    buffer = CallBuffer("secret")
    raw = [(b"host", b"127.0.0.1"), (b"content-type", b"application/json")]  # a request's, as ASGI has them
    assert buffer.from_hub([*raw, (b"x-aidhub-token", b"secret")])
    assert not buffer.direct([(b"content-length", b"49"), (b"x-aidhub-token", b"secret")])
    for token in (b"secreT", b"", b"secret "):
        assert not buffer.from_hub([*raw, (b"x-aidhub-token", token)])
    assert buffer.direct(raw) and buffer.direct([])


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


def test_tabs_newlines_and_unicode_in_payloads_and_errors_survive_the_reply():
    buffer = CallBuffer("secret")
    inputs = {"text": ["a\tb\nc", "é ✓ \u2028"]}
    buffer.add(time.time(), 1.0, inputs, b'{"upper":["A\\tB\\nC"]}')
    buffer.add(time.time(), 1.0, inputs, None, error="line one\n\tline two")
    ok, failed = (record_of(c) for c in take(buffer, 0, 10)["calls"])
    assert json.loads(ok.inputs) == inputs and json.loads(ok.outputs) == {"upper": ["A\tB\nC"]}
    assert failed.error == "line one\n\tline two" and failed.outputs is None


def test_a_request_body_kept_as_it_came_is_sent_as_it_came_and_stored_as_its_inputs():
    buffer = CallBuffer("secret")
    body = b'{\n\t"inputs": {"text": ["a\\tb \xc3\xa9"], "x": [1,\t2.50]},\n\t"note": 1\n}'
    buffer.add(time.time(), 1.0, {"x": "parsed"}, b'{"y":1}', body=body)
    call = take(buffer, 0, 1)["calls"][0]
    assert call["body"] == body.decode() and record_of(call).inputs == '{"text":["a\\tb é"],"x":[1,2.5]}'


def _parse(body: bytes, model) -> tuple:
    """BentoML's JSON parsing of `body` into `model`, and the request's scope afterwards."""
    from _bentoml_impl.serde import JSONSerde
    from starlette.requests import Request

    scope = {"type": "http", "method": "POST", "headers": [(b"content-type", b"application/json")]}

    async def receive():
        return {"type": "http.request", "body": body, "more_body": False}

    return asyncio.run(JSONSerde().parse_request(Request(scope, receive), model)), scope


def test_bentomls_json_parsing_leaves_the_body_in_the_requests_scope(monkeypatch):
    """What the service's route reads through `ctx.request`, another Request on the same scope."""
    import pydantic
    from _bentoml_impl.serde import JSONSerde

    class Body(pydantic.BaseModel):
        inputs: dict

    original = JSONSerde.parse_request
    monkeypatch.setattr(JSONSerde, "parse_request", original)  # put back afterwards
    calls.keep_request_bodies()
    patched = JSONSerde.parse_request
    assert patched is not original
    calls.keep_request_bodies()
    assert JSONSerde.parse_request is patched  # replaced once only
    body = b'{"inputs":\n {"x": [1]}}'
    parsed, scope = _parse(body, Body)
    assert parsed.inputs == {"x": [1]} and scope[calls.BODY_KEY] == body
    with pytest.raises(pydantic.ValidationError):  # BentoML's errors, as BentoML raises them
        _parse(b'{"inputs": 3}', Body)


def test_a_model_with_file_fields_is_parsed_by_bentomls_own_parsing(monkeypatch):
    """A body that may be a file's URL to download: BentoML's own method parses it."""
    from _bentoml_impl import serde
    from _bentoml_sdk.io_models import IORootModel

    class Files(IORootModel[list]):
        pass

    Files.multipart_fields = ["root"]
    seen = []  # what BentoML's own method asked: whether the body is a URL
    monkeypatch.setattr(serde, "is_http_url", lambda text: seen.append(text) or False)
    monkeypatch.setattr(serde.JSONSerde, "parse_request", serde.JSONSerde.parse_request)
    calls.keep_request_bodies()
    parsed, scope = _parse(b"[1, 2]", Files)
    assert seen == ["[1, 2]"] and parsed.root == [1, 2] and scope[calls.BODY_KEY] == b"[1, 2]"


def test_a_bentoml_whose_json_parsing_changed_shape_is_left_alone(monkeypatch):
    from _bentoml_impl.serde import JSONSerde

    async def changed(self, request, cls):
        return cls.model_validate_json(await request.body())

    monkeypatch.setattr(JSONSerde, "parse_request", changed)
    calls.keep_request_bodies()
    assert JSONSerde.parse_request is changed


def test_an_older_servers_records_hold_their_inputs_as_written():
    call = {"id": new_prediction_id(), "at": repr(time.time()), "latency_ms": "1.0", "status": "ok",
            "truncated": "0", "error": "", "body": '{"x":[1]}', "outputs": ""}  # fmt: skip
    assert record_of(call, reply_format=1).inputs == '{"x":[1]}'


def test_a_byte_that_is_not_utf8_spoils_its_record_not_the_reply():
    head, records = parse_reply(b'{"worker": "w", "last": 1}\nid\t\xff')
    assert head["last"] == 1 and records == [["id", "\ufffd"]]
