"""Image-sized inputs (1x3x224x224 float32) through a real hub (`aid serve`) to a real model server:
as 3 MB of JSON, as one .npy body, and as v2 binary tensors from the stock Triton client.

One tiny ONNX model, `image-mean`, takes the image and answers each image's mean, so a wrong byte
anywhere on the way shows in the answer. Bad bodies get a 4xx naming the problem.
"""

from __future__ import annotations

import io
import json
import sqlite3

import httpx
import numpy as np
import onnx
import pytest
import tritonclient.http as triton
import yaml
from onnx import TensorProto, helper

from tests.hubserver import HubProcess, wait_for

NAME = "image-mean"
SHAPE = (1, 3, 224, 224)
NPY = {"Content-Type": "application/x-npy"}


def image_mean_package(root) -> str:
    """image float32 [-1, 3, 224, 224] -> mean float32 [-1] (ReduceMean over each image)."""
    root.mkdir(parents=True)
    image = helper.make_tensor_value_info("image", TensorProto.FLOAT, [None, *SHAPE[1:]])
    mean = helper.make_tensor_value_info("mean", TensorProto.FLOAT, [None])
    node = helper.make_node("ReduceMean", ["image"], ["mean"], axes=[1, 2, 3], keepdims=0)
    model = helper.make_model(
        helper.make_graph([node], NAME, [image], [mean]), opset_imports=[helper.make_opsetid("", 17)]
    )
    model.ir_version = 8
    onnx.save(model, str(root / "model.onnx"))
    manifest = {
        "name": NAME, "version": "1.0.0", "task": "image-classification", "framework": "onnx",
        "summary": "The mean of each image", "artifact": "model.onnx", "examples": "examples.json",
    }  # fmt: skip
    (root / "aid.yaml").write_text(yaml.safe_dump(manifest, sort_keys=False))
    (root / "README.md").write_text(f"# {NAME}\n\nThe mean of each image.\n")
    example = np.full(SHAPE, 0.5, dtype=np.float32).tolist()
    (root / "examples.json").write_text(
        json.dumps([{"inputs": {"image": example}, "outputs": {"mean": [0.5]}}])
    )
    return str(root)


def kind_package(root) -> str:
    """A Python model that answers the Python type its input arrives as, and the input's sum."""
    root.mkdir(parents=True)
    manifest = {
        "name": "kind", "version": "1.0.0", "task": "regression", "framework": "python",
        "summary": "The type of its input", "entrypoint": "predict.py:Model", "examples": "examples.json",
        "inputs": {"x": {"dtype": "float64", "shape": [-1]}},
        "outputs": {"kind": {"dtype": "string", "shape": []}, "sum": {"dtype": "float64", "shape": []}},
    }  # fmt: skip
    (root / "aid.yaml").write_text(yaml.safe_dump(manifest, sort_keys=False))
    (root / "README.md").write_text("# kind\n\nThe type of its input.\n")
    (root / "predict.py").write_text(
        "class Model:\n    def predict(self, x):\n        return {'kind': type(x).__name__, 'sum': sum(x)}\n"
    )
    example = {"inputs": {"x": [1.0, 2.0]}, "outputs": {"kind": "list", "sum": 3.0}}
    (root / "examples.json").write_text(json.dumps([example]))
    return str(root)


@pytest.fixture(scope="module")
def hub(tmp_path_factory):
    server = HubProcess(tmp_path_factory.mktemp("big-inputs")).start()
    try:
        packages = tmp_path_factory.mktemp("pkg")
        for package in (image_mean_package(packages / NAME), kind_package(packages / "kind")):
            done = server.aid("publish", package, "--deploy")
            assert done.returncode == 0, f"{done.stdout}{done.stderr}\n{server.output()}"
        yield server
    finally:
        server.undeploy_all()
        server.stop()


@pytest.fixture(scope="module")
def image() -> np.ndarray:
    return np.random.default_rng(7).random(SHAPE, dtype=np.float32)


def predict_url(hub) -> str:
    return f"{hub.url}/api/v1/models/{NAME}/predict"


def npy(array) -> bytes:
    buffer = io.BytesIO()
    np.save(buffer, array)
    return buffer.getvalue()


def logged_inputs(hub, prediction_id: str) -> tuple[str, int]:
    """(inputs, truncated) of a prediction, once the hub's log has written it."""

    def row():
        with sqlite3.connect(hub.home / "hub.db") as db:
            sql = "SELECT inputs, truncated FROM monitor_prediction WHERE id = ?"
            return db.execute(sql, (prediction_id,)).fetchone()

    return wait_for(row, 10, f"prediction {prediction_id} in the log")


def test_a_3_mb_json_image_is_answered_and_logged_as_a_marker(hub, image):
    body = json.dumps({"inputs": {"image": image.tolist()}}).encode()
    assert len(body) > 3_000_000
    reply = httpx.post(
        predict_url(hub), content=body, headers={"Content-Type": "application/json"}, timeout=60
    )
    assert reply.status_code == 200, reply.text[:500]
    assert reply.json()["outputs"]["mean"] == pytest.approx([float(image.mean())], rel=1e-4)
    inputs, truncated = logged_inputs(hub, reply.json()["id"])
    assert (json.loads(inputs), truncated) == ({"_truncated": True, "bytes": len(body)}, 1)


def test_an_npy_image_gives_the_same_answer_as_json(hub, image):
    reply = httpx.post(predict_url(hub), content=npy(image), headers=NPY, timeout=60)
    assert reply.status_code == 200, reply.text[:500]
    assert reply.json()["outputs"]["mean"] == pytest.approx([float(image.mean())], rel=1e-4)
    assert reply.headers["X-Prediction-Id"] == reply.json()["id"]
    inputs, truncated = logged_inputs(hub, reply.json()["id"])
    assert (json.loads(inputs), truncated) == ({"_truncated": True, "bytes": image.nbytes}, 1)


def test_an_npy_of_float64_or_big_endian_is_cast_to_the_schema(hub, image):
    for array in (image.astype(np.float64), image.astype(">f4")):
        reply = httpx.post(predict_url(hub), content=npy(array), headers=NPY, timeout=60)
        assert reply.status_code == 200, reply.text[:500]
        assert reply.json()["outputs"]["mean"] == pytest.approx([float(image.mean())], rel=1e-4)


def test_v2_binary_tensors_from_the_triton_client(hub, image):
    client = triton.InferenceServerClient(hub.url.removeprefix("http://"), network_timeout=60)
    tensor = triton.InferInput("image", list(image.shape), "FP32")
    tensor.set_data_from_numpy(image, binary_data=True)
    for binary_out in (True, False):
        outputs = [triton.InferRequestedOutput("mean", binary_data=binary_out)]
        result = client.infer(NAME, [tensor], outputs=outputs)
        assert result.as_numpy("mean").tolist() == pytest.approx([float(image.mean())], rel=1e-4)
    batch = np.stack([image[0], image[0] * 0]).astype(np.float32)
    tensor = triton.InferInput("image", list(batch.shape), "FP32")
    tensor.set_data_from_numpy(batch, binary_data=True)
    result = client.infer(NAME, [tensor], model_version="1.0.0")
    assert result.as_numpy("mean").tolist() == pytest.approx([float(image.mean()), 0.0], rel=1e-4)


def v2_binary_call(hub, size, data: bytes) -> httpx.Response:
    header = json.dumps({"inputs": [{
        "name": "image", "shape": list(SHAPE), "datatype": "FP32", "parameters": {"binary_data_size": size},
    }]}).encode()  # fmt: skip
    headers = {
        "Inference-Header-Content-Length": str(len(header)),
        "Content-Type": "application/octet-stream",
    }
    return httpx.post(f"{hub.url}/v2/models/{NAME}/infer", content=header + data, headers=headers)


def test_v2_binary_data_of_the_wrong_size_is_a_400_naming_it(hub, image):
    reply = v2_binary_call(hub, 100, image.tobytes()[:100])
    assert reply.status_code == 400
    assert reply.json() == {
        "ok": False,
        "error": "Input 'image': binary_data_size 100 does not hold shape [1, 3, 224, 224] of FP32 "
        "(602112 bytes; 100 bytes came).",
        "errors": [],
        "status": 400,
    }
    reply = v2_binary_call(hub, "many", image.tobytes())
    assert reply.status_code == 400
    assert reply.json()["error"] == "Input 'image': binary_data_size must be a number of bytes, not 'many'."


def test_a_pickled_npy_is_refused_and_never_loaded(hub, tmp_path):
    marker = tmp_path / "ran"
    hostile = np.array([Run(str(marker))], dtype=object)
    buffer = io.BytesIO()
    np.save(buffer, hostile, allow_pickle=True)
    reply = httpx.post(predict_url(hub), content=buffer.getvalue(), headers=NPY)
    assert reply.status_code == 400
    assert "holds Python objects (a pickle), which the hub does not load" in reply.json()["error"]
    assert not marker.exists()


class Run:
    """Pickles into a call that would create a file, if anything ever unpickled it."""

    def __init__(self, path: str):
        self.path = path

    def __reduce__(self):
        return (open, (self.path, "w"))


@pytest.mark.parametrize(
    ("array", "status", "message"),
    [
        (np.zeros((1, 3, 224, 225), np.float32), 422,
         "inputs.image: expected float32 with shape [-1, 3, 224, 224], got shape [1, 3, 224, 225]"),
        (np.zeros(SHAPE, np.bool_), 422,
         "inputs.image: expected float32 with shape [-1, 3, 224, 224], got bool values"),
        (np.zeros(SHAPE, np.complex64), 400,
         "The .npy body holds complex64 values; send numbers, booleans or text."),
    ],
)  # fmt: skip
def test_an_npy_of_the_wrong_shape_or_dtype_is_refused_naming_it(hub, array, status, message):
    reply = httpx.post(predict_url(hub), content=npy(array), headers=NPY)
    assert reply.status_code == status
    assert message in [reply.json()["error"], *reply.json()["errors"]]


def test_a_truncated_npy_is_a_400(hub, image):
    reply = httpx.post(predict_url(hub), content=npy(image)[:5000], headers=NPY)
    assert reply.status_code == 400
    assert reply.json()["error"].startswith("The .npy body cannot be read: ")
    assert reply.json()["error"].endswith("Is it cut short? Save it with numpy.save.")
    not_npy = httpx.post(predict_url(hub), content=b"PK\x03\x04zip", headers=NPY)
    assert not_npy.status_code == 400
    assert not_npy.json()["error"].startswith("The body is not a .npy file")


def big_json(image, replace: str) -> bytes:
    """The image as JSON with its first value replaced by the JSON text `replace`."""
    text = json.dumps({"inputs": {"image": image.tolist()}})
    first = text.index("[[[[") + 4
    return (text[:first] + replace + text[text.index(",", first) :]).encode()


@pytest.mark.parametrize(
    ("replace", "problem"),
    [
        ("true", "got a value True of type bool"),
        ('"0.5"', "got a value '0.5' of type str"),
        ("null", "got a value None of type NoneType"),
        ("[0.5, 0.5]", "got a ragged nested list (rows of different lengths)"),
    ],
)
def test_a_big_json_image_with_one_bad_value_names_it_as_before(hub, image, replace, problem):
    reply = httpx.post(predict_url(hub), content=big_json(image, replace), timeout=60)
    assert reply.status_code == 422
    want = "inputs.image: expected float32 with shape [-1, 3, 224, 224]"
    assert reply.json()["errors"] == [f"{want}, {problem}"]


def test_a_body_with_more_than_inputs_is_still_answered(hub, image):
    body = {"inputs": {"image": image[:, :, :2, :].tolist()}, "note": "x"}
    reply = httpx.post(predict_url(hub), json=body)
    assert reply.status_code == 422  # shape [1, 3, 2, 224]: the hub's own check, not the server's
    assert reply.json()["errors"] == [
        "inputs.image: expected float32 with shape [-1, 3, 224, 224], got shape [1, 3, 2, 224]"
    ]
    body = {"inputs": {"image": np.full(SHAPE, 2.0, np.float32).tolist()}, "note": "x"}
    reply = httpx.post(predict_url(hub), json=body, timeout=60)
    assert (reply.status_code, reply.json()["outputs"]) == (200, {"mean": [2.0]})


def test_v2_json_data_of_an_image_is_answered(hub, image):
    tensor = {"name": "image", "shape": list(SHAPE), "datatype": "FP32", "data": image.reshape(-1).tolist()}
    reply = httpx.post(f"{hub.url}/v2/models/{NAME}/infer", json={"inputs": [tensor]}, timeout=60)
    assert reply.status_code == 200, reply.text[:500]
    [mean] = reply.json()["outputs"]
    assert mean["data"] == pytest.approx([float(image.mean())], rel=1e-4)


def test_v2_json_data_with_a_bool_is_named_as_before(hub, image):
    data = [True, *image.reshape(-1).tolist()[1:]]
    tensor = {"name": "image", "shape": list(SHAPE), "datatype": "FP32", "data": data}
    reply = httpx.post(f"{hub.url}/v2/models/{NAME}/infer", json={"inputs": [tensor]}, timeout=60)
    assert reply.status_code == 422
    assert reply.json()["errors"] == [
        "inputs.image: expected float32 with shape [-1, 3, 224, 224], got a value True of type bool"
    ]


def server_url(hub) -> str:
    version = httpx.get(f"{hub.url}/api/v1/models/{NAME}/versions/1.0.0").json()
    return version["deployment"]["url"]


def test_the_model_servers_tensor_route_is_the_hubs_own(hub, image):
    from hub.collector import report_token
    from runners.flavors import tensorbody

    body, length = tensorbody.encode({"image": image})
    url = server_url(hub) + tensorbody.PREDICT_ROUTE
    headers = {tensorbody.HEADER_LENGTH: str(length)}
    refused = httpx.post(url, content=body, headers=headers)
    assert (refused.status_code, refused.json()) == (
        403,
        {"error": "This route is the hub's; call POST /predict."},
    )
    headers["x-aidhub-token"] = report_token(hub.home)
    reply = httpx.post(url, content=body, headers=headers)
    assert reply.status_code == 200, reply.text
    assert reply.json()["mean"] == pytest.approx([float(image.mean())], rel=1e-4)
    short = httpx.post(url, content=body[:-4], headers=headers)
    assert (short.status_code, short.json()) == (
        400,
        {"error": "Input 'image': 602112 bytes announced, 602108 left."},
    )


def test_a_python_model_gets_binary_inputs_as_lists(hub):
    """Its code was written for the lists JSON gives it: the hub sends it JSON, whatever came."""
    x = np.array([1.5, 2.5, 3.0])
    url = f"{hub.url}/api/v1/models/kind/predict"
    by_npy = httpx.post(url, content=npy(x), headers=NPY)
    assert (by_npy.status_code, by_npy.json()["outputs"]) == (200, {"kind": "list", "sum": 7.0})
    client = triton.InferenceServerClient(hub.url.removeprefix("http://"))
    tensor = triton.InferInput("x", [3], "FP64")
    tensor.set_data_from_numpy(x, binary_data=True)
    result = client.infer("kind", [tensor])
    assert (result.as_numpy("kind").tolist(), result.as_numpy("sum").tolist()) == (
        b"list",
        7.0,
    )  # scalars: shape []


def test_checked_inputs_are_logged_as_the_caller_wrote_them_unless_a_key_repeats(hub):
    url = f"{hub.url}/api/v1/models/kind/predict"
    headers = {"Content-Type": "application/json"}
    written = b'{"inputs":  {"x": [1.5, 2e-3, 3]} }'  # cut from the body, not encoded again
    reply = httpx.post(url, content=written, headers=headers)
    assert reply.status_code == 200, reply.text
    assert logged_inputs(hub, reply.json()["id"]) == ('{"x": [1.5, 2e-3, 3]}', 0)
    twice = b'{"inputs": {"x": [9.0]}, "inputs": {"x": [1.0, 2.0]}}'  # JSON keeps the last
    reply = httpx.post(url, content=twice, headers=headers)
    assert (reply.status_code, reply.json()["outputs"]["sum"]) == (200, 3.0)
    assert logged_inputs(hub, reply.json()["id"]) == ('{"x":[1.0,2.0]}', 0)
