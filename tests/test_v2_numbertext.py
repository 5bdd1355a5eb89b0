"""The v2 JSON fast path: `web.numbertext.only_numbers` proves from the text that the number tensors'
`data` lists hold only numbers, and `web.v2.read_inputs` then reads them with one numpy call. Any
body it cannot prove goes the value-by-value way as before, which keeps strings, bools and nulls
for the hub to name (tests/test_big_inputs.py checks the messages through a running hub)."""

from __future__ import annotations

import json

import numpy as np
import orjson
import pytest

from hub.errors import Invalid
from web.numbertext import only_numbers
from web.v2 import read_inputs


def body(data, datatype="FP32", shape=None, **extra) -> bytes:
    tensor = {"name": "x", "datatype": datatype, "shape": shape or [len(data)], "data": data}
    return json.dumps({"inputs": [tensor], **extra}).encode()


def proven(text: bytes) -> bool:
    header = orjson.loads(text)
    return only_numbers(text, header, [t["data"] for t in header["inputs"]])


def test_numbers_with_strings_and_flags_around_them_are_proven():
    assert proven(body([1.5, -2, 3e-7, 0]))
    assert proven(body([1.5, 2.5], id="request-1", parameters={"binary_data_output": False}))
    assert proven(body([1, 2], outputs=[{"name": "y", "parameters": {"binary_data": True}}]))
    assert proven(body([]))


@pytest.mark.parametrize(
    "text",
    [
        body([1.5, "2.5"]),  # a string numpy would read as 2.5
        body([1.5, True]),  # a bool numpy would read as 1.0
        body([1.5, False]),
        body([1.5, None]),  # a null numpy would read as nan
        body([[1.5], ["a"]]),  # a string one list down
        body([1.5, {"k": 1}]),
        b'{"inputs": [{"name": "x\\"y", "datatype": "FP32", "shape": [1], "data": [1.0]}]}',
        b'{"inputs": [{"name": "x", "name": "x", "datatype": "FP32", "shape": [1], "data": [1.0]}]}',
        b'{"inputs": [{"name": "x", "datatype": "FP32", "shape": [2], "data": [1.0, NaN]}]}',
    ],
)
def test_anything_but_numbers_or_an_odd_text_is_not_proven(text):
    header = json.loads(text)  # the standard library: it reads NaN, as parse_json falls back to it
    assert not only_numbers(text, header, [t["data"] for t in header["inputs"]])


def test_an_image_is_read_as_one_array_of_the_declared_type():
    image = np.random.default_rng(0).random((1, 3, 8, 8), dtype=np.float32)
    _, inputs = read_inputs(body(image.reshape(-1).tolist(), shape=[1, 3, 8, 8]), None)
    assert inputs["x"].dtype == np.float32 and np.array_equal(inputs["x"], image)
    _, inputs = read_inputs(body([1, 2**40, -3], "INT64"), None)
    assert inputs["x"].dtype == np.int64 and inputs["x"].tolist() == [1, 2**40, -3]
    _, inputs = read_inputs(body([0.5, 1], "FP16"), None)
    assert inputs["x"].dtype == np.float16 and inputs["x"].tolist() == [0.5, 1.0]


@pytest.mark.parametrize(
    ("data", "datatype"),
    [
        ([1.5, "2.5"], "FP32"),
        ([1.5, True], "FP32"),
        ([1.5, None], "FP64"),
        ([1, 2.5], "INT32"),  # a float in an INT tensor: numpy would cut it to 2
        ([1, 2**64], "UINT64"),
    ],
)
def test_values_of_another_type_are_kept_for_the_hub_to_name(data, datatype):
    _, inputs = read_inputs(body(data, datatype), None)
    assert inputs["x"] == data  # nested lists as sent, not an array that hid the value


def test_nested_data_is_flattened_and_shaped_as_before():
    _, inputs = read_inputs(body([[1.0, 2.0], [3.0, 4.0]], shape=[2, 2]), None)
    assert inputs["x"] == [[1.0, 2.0], [3.0, 4.0]]


def test_data_that_does_not_fill_the_shape_is_a_400_naming_it():
    with pytest.raises(Invalid, match=r"Input 'x': 3 values do not fill shape \[2, 2\]"):
        read_inputs(body([1.0, 2.0, 3.0], shape=[2, 2]), None)


def test_a_binary_input_beside_a_json_one_is_proven_and_read():
    header = json.dumps({
        "inputs": [
            {"name": "a", "datatype": "FP32", "shape": [2], "parameters": {"binary_data_size": 8}},
            {"name": "b", "datatype": "FP32", "shape": [2], "data": [1.5, 2.5]},
        ]
    }).encode()  # fmt: skip
    parsed = json.loads(header)
    assert only_numbers(header, parsed, [parsed["inputs"][1]["data"]])
    raw = header + np.array([3.0, 4.0], dtype="<f4").tobytes()
    _, inputs = read_inputs(raw, str(len(header)))
    assert inputs["a"].tolist() == [3.0, 4.0]
    assert isinstance(inputs["b"], np.ndarray) and inputs["b"].tolist() == [1.5, 2.5]


def test_a_header_a_thousand_lists_deep_is_walked_without_recursion():
    deep = b"[" * 1000 + b"true" + b"]" * 1000
    text = (
        b'{"inputs": [{"name": "x", "datatype": "FP32", "shape": [1], "data": [1.0]}], "deep": ' + deep + b"}"
    )
    header = orjson.loads(text)
    assert only_numbers(text, header, [header["inputs"][0]["data"]])
    _, inputs = read_inputs(text, None)
    assert inputs["x"].tolist() == [1.0]
