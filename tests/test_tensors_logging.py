"""hub/serving._loggable: JSON numbers that numpy proved fit are encoded for the prediction log by
orjson (ten times faster); the log stores the same values, and anything orjson would change stays
with the log's own encoder."""

import json

import numpy as np

from hub.serving import _loggable
from monitor.predlog import JSONText, encode_payload

CAP = 16384


def logged(inputs: dict):
    checked = {name: np.asarray(value, dtype=np.float64) for name, value in inputs.items()}
    return _loggable(inputs, None, CAP, checked)


def test_json_numbers_are_logged_as_the_same_values():
    inputs = {"x": [[1e-05, 2.5], [3, 1e16]], "y": [[-0.0, 1.5e-07]]}
    text = logged(inputs)
    assert isinstance(text, JSONText)
    stored, cut = encode_payload(text, CAP)
    assert not cut and json.loads(stored) == inputs
    assert [type(v) for v in json.loads(stored)["x"][1]] == [int, float]  # 3 stays an integer


def test_nan_infinity_and_huge_integers_stay_with_the_logs_encoder():
    for value in (float("nan"), float("inf"), 2**70):
        inputs = {"x": [[value, 1.0]]}
        kept = _loggable(inputs, None, CAP, {"x": np.zeros((1, 2))})
        assert kept == inputs and not isinstance(kept, JSONText)
    stored, _ = encode_payload(
        _loggable({"x": [[float("nan"), 1.0]]}, None, CAP, {"x": np.zeros((1, 2))}), CAP
    )
    assert stored == '{"x":[[NaN,1.0]]}'


def test_inputs_numpy_did_not_prove_stay_lists():
    inputs = {"x": [["a", 1.0]]}
    assert _loggable(inputs, None, CAP, inputs) == inputs
    assert _loggable(inputs, None, CAP) == inputs
    big = {"x": [[0.5] * 10000]}  # still cut before encoding when the arrays are surely past the cap
    assert _loggable({"x": np.asarray(big["x"])}, None, CAP, None).startswith('{"_truncated"')


def test_binary_tensors_are_logged_as_their_values():
    inputs = {"x": np.asarray([[0.1875, 2.0]], dtype=np.float32), "n": np.asarray([[True, False]])}
    text = _loggable(inputs, None, CAP, inputs)
    assert isinstance(text, JSONText)
    assert json.loads(text) == {"x": [[0.1875, 2.0]], "n": [[True, False]]}


def test_float32_arrays_are_logged_as_their_shortest_text_and_read_back_the_same_float32():
    x = np.asarray([[0.1, 1e-8, 3.0, -2.5e30]], dtype=np.float32)
    text = _loggable({"x": x}, None, CAP, {"x": x})
    assert text == '{"x":[[0.1,1e-8,3.0,-2.5e+30]]}'
    assert np.array_equal(np.asarray(json.loads(text)["x"], dtype=np.float32), x)


def test_arrays_orjson_cannot_write_as_they_are_go_through_lists():
    strided = np.arange(12.0).reshape(3, 4)[:, 1]  # not in C order
    assert json.loads(_loggable({"x": strided}, None, CAP, {"x": strided})) == {"x": [1.0, 5.0, 9.0]}
    nan = np.asarray([np.nan, 1.0])
    stored, _ = encode_payload(_loggable({"x": nan}, None, CAP, {"x": nan}), CAP)
    assert stored == '{"x":[NaN,1.0]}'
