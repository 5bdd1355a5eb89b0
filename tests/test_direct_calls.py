"""Calls made straight to a model's server: the server's buffer and how the hub reads its records.
(The whole path, a real server and a real hub stopped and started again, is in test_end_to_end.py.)"""

from __future__ import annotations

import json
import os
import stat
import time
from types import SimpleNamespace

import pytest

from hub.collector import record_of, report_token
from monitor.predlog import new_prediction_id as hub_prediction_id
from runners.flavors.calls import CallBuffer, capped_json, new_prediction_id, parse_reply

VERSION = SimpleNamespace(id=7, version="1.0.0", model=SimpleNamespace(name="iris"))


def take(buffer: CallBuffer, ack: int, limit: int) -> dict:
    """What the hub gets from POST /aidhub/calls, parsed."""
    head, calls = parse_reply(buffer.take(ack, limit))
    return {**head, "calls": calls}


def test_the_server_makes_ids_of_the_hubs_form_and_order():
    now = time.time()
    mine, hubs = new_prediction_id(now), hub_prediction_id(now)
    assert len(mine) == 26 and mine[:10] == hubs[:10]  # the same 48-bit time, the same alphabet
    assert new_prediction_id(now) < new_prediction_id(now + 0.002)


def test_payloads_past_the_cap_become_a_marker():
    assert capped_json({"x": [1, 2]}, 100) == ('{"x":[1,2]}', False)
    text, cut = capped_json({"x": "é" * 100}, 100)
    assert json.loads(text) == {"_truncated": True, "bytes": 208} and cut


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


def test_beyond_the_bound_the_oldest_are_dropped_and_counted():
    buffer = CallBuffer("secret", max_calls=100)
    for i in range(130):
        buffer.add(time.time(), 1.0, {"x": i}, None, error="boom")
    reply = take(buffer, 0, 1000)
    assert reply["dropped"] == 30 and len(reply["calls"]) == 100
    assert json.loads(reply["calls"][0]["inputs"]) == {"x": 30}
    assert reply["calls"][0]["status"] == "error"
    assert record_of(VERSION, reply["calls"][0]).error == "boom"


def test_only_the_hubs_token_marks_a_call_as_the_hubs():
    buffer = CallBuffer("secret")
    assert buffer.from_hub({"x-aidhub-token": "secret"})
    assert not buffer.from_hub({"x-aidhub-token": "guess"}) and not buffer.from_hub({})


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
    rec = record_of(VERSION, call)
    assert (rec.id, rec.version_id, rec.model, rec.version) == (call["id"], 7, "iris", "1.0.0")
    assert (rec.source, rec.status, rec.latency_ms, rec.truncated) == ("direct", "ok", 2.5, False)
    assert (rec.inputs, rec.outputs) == ('{"features":[[1.0,2.0]]}', '{"label":[1]}')  # stored as sent


def test_a_payload_past_the_cap_is_stored_as_a_marker_and_the_call_marked_truncated():
    buffer = CallBuffer("secret", payload_cap=64)
    buffer.add(time.time(), 1.0, {"pixels": [0.5] * 100}, b'{"label":[1]}')
    rec = record_of(VERSION, take(buffer, 0, 1)["calls"][0])
    assert json.loads(rec.inputs) == {"_truncated": True, "bytes": 412} and rec.truncated


@pytest.mark.parametrize(
    "change",
    [
        {"id": "../../etc"},
        {"status": "maybe"},
        {"at": "1e20"},
        {"latency_ms": "slow"},
        {"inputs": ""},
        {"error": "not json"},
    ],
)
def test_a_malformed_record_is_skipped_not_stored(change):
    good = {"id": new_prediction_id(), "at": repr(time.time()), "latency_ms": "1.0", "status": "ok",
            "truncated": "0", "error": "", "inputs": "{}", "outputs": ""}  # fmt: skip
    assert record_of(VERSION, good) is not None
    assert record_of(VERSION, good | change) is None


def test_the_report_token_is_made_once_and_kept_private(tmp_path):
    token = report_token(tmp_path)
    assert len(token) >= 40 and report_token(tmp_path) == token
    assert stat.S_IMODE(os.stat(tmp_path / "report-token").st_mode) == 0o600


def test_a_stored_payload_that_does_not_parse_is_left_out_of_drift(db):
    from monitor import driftruns
    from monitor.predlog import JSONText, PredictionLog, PredictionRecord

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
    ok, failed = (record_of(VERSION, c) for c in take(buffer, 0, 10)["calls"])
    assert json.loads(ok.inputs) == inputs and json.loads(ok.outputs) == {"upper": ["A\tB\nC"]}
    assert failed.error == "line one\n\tline two" and failed.outputs is None
