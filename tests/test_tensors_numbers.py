"""registry/tensors.numbers_only: a text check that lets numpy read a JSON image as float64 at once.
It must never say "numbers only" for a body holding a string, a bool or null anywhere in its values."""

import json
import random

import numpy as np
import orjson
import pytest

from registry.tensors import check_inputs, fitting_arrays, numbers_only

FLOATS = {"x": {"dtype": "float32", "shape": [-1, 2]}}


def body(inputs) -> bytes:
    return json.dumps({"inputs": inputs}).encode()


def test_numbers_in_any_notation_are_numbers_only():
    inputs = {"x": [[1, -2.5e-05], [3e10, 0.0]], "y": [7]}
    assert numbers_only(body(inputs), 2)  # "inputs" holds a "u": the keys are skipped
    assert numbers_only(b'{ "inputs" : {"x": [[1, -Infinity]]} }', 1)
    assert not numbers_only(b'{"inputs": {"x": [[NaN, 1]]}}', 1)  # its "a": the slower path, as before
    assert numbers_only(orjson.dumps({"inputs": {"quantum_alpha": [1.5]}}), 1)


@pytest.mark.parametrize(
    "text",
    [
        b'{"inputs": {"x": [[1.0, "2"]]}}',
        b'{"inputs": {"x": [[1.0, true]]}}',
        b'{"inputs": {"x": [[false, 1.0]]}}',
        b'{"inputs": {"x": [[1.0, null]]}}',
        b'{"inputs": {"x": [[1.0, {"a": 1}]]}}',
        b'{"inputs": {"x": [[1.0, 2.0]], "x": [[1.0, "2"]]}}',  # a duplicate key: one input parsed
        b'{"inputs": {"x\\"": [[1.0, 2.0]]}}',  # an escaped quote in a key
        b'{"inputs": {"x": [["a\\"b", 2.0]]}}',
    ],
)
def test_a_string_bool_or_null_anywhere_is_seen(text):
    assert len(json.loads(text)["inputs"]) == 1
    assert not numbers_only(text, 1)


def test_an_empty_object_passes_the_text_check_but_numpy_refuses_it():
    inputs = {"x": [[1.0, {}]]}
    assert numbers_only(body(inputs), 1)
    assert fitting_arrays(inputs, FLOATS, True, numbers=True) is None
    assert check_inputs(inputs, FLOATS, True) == [
        "inputs.x: expected float32 with shape [-1, 2], got a value {} of type dict"
    ]


def test_floats_read_at_once_equal_the_arrays_numpy_finds_itself():
    values = np.random.default_rng(1).normal(size=(5, 2)).tolist()
    values[0] = [1, 2]  # ints among floats
    at_once = fitting_arrays({"x": values}, FLOATS, True, numbers=True)["x"]
    found = fitting_arrays({"x": values}, FLOATS, True)["x"]
    assert at_once.dtype == found.dtype == np.float32 and np.array_equal(at_once, found)
    assert fitting_arrays({"x": [[1.0], [2.0, 3.0]]}, FLOATS, True, numbers=True) is None  # ragged


def random_value(rng: random.Random, depth: int = 0):
    kind = rng.choice(["int", "float", "list", "list", "str", "bool", "null", "dict", "nan"])
    if depth > 3 or kind == "int":
        return rng.randint(-(10**6), 10**6)
    if kind == "float":
        return rng.uniform(-1e6, 1e6) * 10 ** rng.randint(-30, 30)
    if kind == "list":
        return [random_value(rng, depth + 1) for _ in range(rng.randint(0, 4))]
    if kind == "dict":
        return {rng.choice(["k", "u", ""]): random_value(rng, depth + 1)} if rng.random() < 0.7 else {}
    return {"str": 'ua"1', "bool": rng.random() < 0.5, "null": None, "nan": float("nan")}[kind]


def leaves(value):
    if isinstance(value, list):
        return [leaf for v in value for leaf in leaves(v)]
    if isinstance(value, dict):
        return [value] + [leaf for v in value.values() for leaf in leaves(v)]  # noqa: RUF005
    return [value]


def test_no_string_bool_or_null_ever_passes_in_random_bodies():
    rng, passed = random.Random(12), 0
    for _ in range(3000):
        inputs = {
            rng.choice(["image", "quant", "x1"]) + str(i): random_value(rng) for i in range(rng.randint(1, 3))
        }
        text = json.dumps({"inputs": inputs}, indent=rng.choice([None, 1])).encode()
        if numbers_only(text, len(inputs)):
            passed += 1
            kinds = {type(leaf) for v in inputs.values() for leaf in leaves(v)}
            assert kinds <= {int, float, dict}, text
            assert all(not leaf for v in inputs.values() for leaf in leaves(v) if isinstance(leaf, dict))
    assert passed > 300  # the check also says yes, often
