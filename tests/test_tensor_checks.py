"""registry/tensors.py: numpy proves that big inputs fit; anything it cannot prove is walked value by
value as before, with the same messages."""

import json

import numpy as np
import pytest

from registry.tensors import check_inputs, fitting_arrays, without_bools

FLOATS = {"x": {"dtype": "float32", "shape": [-1, 2]}}
INT8 = {"x": {"dtype": "int8", "shape": [-1, 2]}}


def text(inputs) -> bytes:
    return json.dumps(inputs).encode()


def test_numbers_that_fit_come_back_as_arrays_of_the_schemas_dtype():
    arrays = fitting_arrays({"x": [[1, 2.5], [3.0, 4]]}, FLOATS, bools_ruled_out=True)
    assert arrays["x"].dtype == np.float32 and arrays["x"].tolist() == [[1.0, 2.5], [3.0, 4.0]]
    assert fitting_arrays({"x": [[1, -128]]}, INT8, True)["x"].dtype == np.int8
    assert fitting_arrays({"x": np.ones((3, 2))}, FLOATS)["x"].dtype == np.float32


@pytest.mark.parametrize(
    "inputs",
    [
        {"x": [[1.0, "2"]]},
        {"x": [[1.0, None]]},
        {"x": [[1.0], [2.0, 3.0]]},
        {"x": [[1.0, 2.0, 3.0]]},
        {"y": [[1, 2]]},
    ],
)
def test_what_numpy_cannot_prove_is_left_to_the_walk(inputs):
    assert fitting_arrays(inputs, FLOATS, bools_ruled_out=True) is None


def test_a_bool_among_numbers_is_caught_by_the_text_not_by_numpy():
    inputs = {"x": [[1.0, True]]}
    assert not without_bools(text(inputs))
    assert fitting_arrays(inputs, FLOATS, bools_ruled_out=False) is None
    assert without_bools(text({"x": [[1.0, 2e-05, -3, 1e10]]}))
    assert not without_bools(b'{"note": "fals e"}')  # a false alarm (spaces go first) costs only the walk
    message = "inputs.x: expected float32 with shape [-1, 2], got a value True of type bool"
    assert check_inputs(inputs, FLOATS, without_bools(text(inputs))) == [message]


@pytest.mark.parametrize(
    ("inputs", "schema", "problem"),
    [
        ({"x": [[1, 200]]}, INT8, "expected int8 with shape [-1, 2], got a value 200 of type int"),
        ({"x": [[1.0, 2]]}, INT8, "expected int8 with shape [-1, 2], got a value 1.0 of type float"),
        ({"x": np.full((1, 2), 300)}, INT8, "expected int8 with shape [-1, 2], got values from 300 to 300"),
        ({"x": np.zeros((1, 2), bool)}, FLOATS, "expected float32 with shape [-1, 2], got bool values"),
        ({"x": np.zeros((2, 3))}, FLOATS, "expected float32 with shape [-1, 2], got shape [2, 3]"),
    ],
)  # fmt: skip
def test_values_that_do_not_fit_are_named(inputs, schema, problem):
    assert fitting_arrays(inputs, schema, bools_ruled_out=True) is None
    assert check_inputs(inputs, schema, bools_ruled_out=True) == [f"inputs.x: {problem}"]
