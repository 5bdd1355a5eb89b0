"""The flavor adapters, loaded in the test process (the same code runs inside each model's env)."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path

import numpy as np
import pytest

from runners.flavors import InputError, load_model
from runners.flavors.serving import CancellingTimeoutMiddleware, Dispatcher, json_body
from tests.fixtures.runner_onnx import EXPECTED, INPUTS, build_multi_io_model, reference_outputs

FIXTURES = Path(__file__).parent / "fixtures"


@pytest.fixture(scope="module")
def onnx_model(tmp_path_factory):
    folder = tmp_path_factory.mktemp("onnx")
    build_multi_io_model(folder / "model.onnx")
    return load_model("onnx", folder, "model.onnx", None, {}, {})


def test_onnx_fixture_expectations_match_numpy():
    assert reference_outputs() == EXPECTED


def test_onnx_returns_every_output_exactly(onnx_model):
    assert onnx_model.predict(INPUTS) == EXPECTED


def test_onnx_output_is_plain_json(onnx_model):
    assert json.loads(json_body(onnx_model.predict(INPUTS))) == EXPECTED


def test_onnx_reads_input_dtypes_from_the_graph(onnx_model):
    assert onnx_model.inputs == {
        "features": ("float32", ["batch", 3]),
        "counts": ("int64", ["batch"]),
        "mask": ("bool", ["batch"]),
        "half": ("float16", ["batch", 2]),
        "scale": ("float32", []),
        "tag": ("string", ["batch"]),
    }


def test_onnx_wrong_width_names_input_and_shape(onnx_model):
    bad = {**INPUTS, "features": [[1.0, 2.0]]}
    with pytest.raises(InputError, match=r"Input 'features' must have shape \[-1, 3\], got \[1, 2\]"):
        onnx_model.predict(bad)


def test_onnx_scalar_given_as_list_is_rejected(onnx_model):
    with pytest.raises(InputError, match=r"Input 'scale' must have 0 dimension\(s\)"):
        onnx_model.predict({**INPUTS, "scale": [2.0]})


def test_onnx_missing_input_lists_what_the_model_takes(onnx_model):
    inputs = {k: v for k, v in INPUTS.items() if k != "mask"}
    with pytest.raises(InputError, match=r"Missing input\(s\) \['mask'\]; this model takes"):
        onnx_model.predict(inputs)


def test_onnx_text_for_a_number_is_an_input_error(onnx_model):
    with pytest.raises(InputError, match="Input 'counts' cannot be read as int64"):
        onnx_model.predict({**INPUTS, "counts": ["many", "more"]})


def test_torch_zips_tuple_outputs_with_manifest_names(tmp_path):
    import torch

    class TwoHeads(torch.nn.Module):
        def forward(self, x, k):
            return x * 2, (x.sum(dim=1) + k.to(x.dtype))

    torch.jit.script(TwoHeads()).save(str(tmp_path / "model.pt"))
    inputs = {"x": {"dtype": "float32", "shape": [-1, 2]}, "k": {"dtype": "int64", "shape": [-1]}}
    outputs = {"doubled": {}, "total": {}}
    model = load_model("torch", tmp_path, "model.pt", None, inputs, outputs)
    result = model.predict({"x": [[1.0, 2.5]], "k": [4]})
    assert result == {"doubled": [[2.0, 5.0]], "total": [7.5]}


def test_sklearn_returns_label_and_probabilities(tmp_path):
    import joblib
    from sklearn.linear_model import LogisticRegression

    x = np.array([[0.0, 0.0], [0.1, 0.0], [5.0, 5.0], [5.1, 5.0]])
    joblib.dump(LogisticRegression().fit(x, [0, 0, 1, 1]), tmp_path / "model.joblib")
    inputs = {"features": {"dtype": "float64", "shape": [-1, 2]}}
    model = load_model("sklearn", tmp_path, "model.joblib", None, inputs, {})
    result = model.predict({"features": [[0.0, 0.1], [5.0, 5.1]]})
    assert result["label"] == [0, 1]
    assert [round(sum(p), 6) for p in result["probabilities"]] == [1.0, 1.0]


def test_python_flavor_calls_setup_once_and_imports_siblings():
    inputs = {"text": {"dtype": "string", "shape": []}, "values": {"dtype": "float64"}}
    folder = FIXTURES / "runner_echo"
    model = load_model("python", folder, None, "predict.py:Model", inputs, {"upper": {}})
    model.predict({"text": "a", "values": [1]})
    result = model.predict({"text": "héllo", "values": [1, 2.5]})
    assert result == {"upper": "HÉLLO", "total": 3.5, "setup_calls": 1}


def test_python_flavor_setup_error_propagates():
    folder = FIXTURES / "runner_setup_fails"
    with pytest.raises(RuntimeError, match="weights.bin is corrupt"):
        load_model("python", folder, None, "predict.py:Model", {"text": {}}, {"label": {}})


def test_unknown_framework_names_the_choices():
    with pytest.raises(ValueError, match="Framework 'tf' is not supported; use one of onnx, torch"):
        load_model("tf", ".", None, None, {}, {})


def test_dispatcher_moves_slow_predictions_to_threads():
    calls = []

    def slow_predict(inputs):
        calls.append(inputs)
        return {"ok": True}

    dispatch = Dispatcher(slow_predict, threads=2)
    dispatch.average_s = 1.0  # as if earlier calls were slow
    assert asyncio.run(dispatch({"a": 1})) == {"ok": True}
    assert dispatch._pool is not None and calls == [{"a": 1}]
    assert dispatch.average_s < 1.0


def _call(middleware, sent: list) -> None:
    async def receive():
        return {"type": "http.request", "body": b""}

    async def send(message):
        sent.append(message)

    return middleware({"type": "http", "path": "/predict"}, receive, send)


def test_timeout_middleware_cancels_its_timer_after_the_response():
    async def app(scope, receive, send):
        await send({"type": "http.response.start", "status": 200, "headers": []})
        await send({"type": "http.response.body", "body": b"{}"})

    async def scenario():
        sent = []
        await _call(CancellingTimeoutMiddleware(app, timeout=60.0), sent)
        loop = asyncio.get_running_loop()
        pending = [h for h in loop._scheduled if not h.cancelled()]
        return sent[0]["status"], pending

    assert asyncio.run(scenario()) == (200, [])


def test_timeout_middleware_answers_504_when_nothing_started_in_time():
    async def slow_app(scope, receive, send):
        await asyncio.sleep(5)

    async def scenario():
        sent = []
        await _call(CancellingTimeoutMiddleware(slow_app, timeout=0.05), sent)
        return sent[0]["status"], json.loads(sent[1]["body"])

    assert asyncio.run(scenario()) == (
        504,
        {"error": "Not able to process the request in 0.05 seconds"},
    )
