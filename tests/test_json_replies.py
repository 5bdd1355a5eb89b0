"""Prediction replies are written by orjson (web/requestbodies.json_bytes) and say what the standard
library's text would: where orjson would write something else, the standard library writes it."""

from __future__ import annotations

import json

import orjson

from web.requestbodies import json_bytes


def test_a_reply_is_orjson_text_with_the_same_values():
    reply = {"id": "01M8XCHC8THKDV2M030FMKXR7K", "outputs": {"label": ["é"], "p": [[0.98, 1e-05, 3]]},
             "latency_ms": 0.5}  # fmt: skip
    text = json_bytes(reply)
    assert text == orjson.dumps(reply) and json.loads(text) == reply


def test_nan_infinity_and_huge_integers_are_written_as_the_standard_library_writes_them():
    for value in (float("nan"), float("inf"), 2**70):
        reply = {"outputs": {"y": [value, 1.0]}}
        assert json_bytes(reply) == json.dumps(reply).encode()
