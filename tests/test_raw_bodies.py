"""Raw bodies through a real hub (`aid serve`, gevent) to real model servers: PNG and JPEG images on
the native predict route (web/imagebodies.py), and v2 binary outputs read by hand against the
binary tensor data extension (the JSON header, Inference-Header-Content-Length, binary_data_size).

Two tiny ONNX models: `image-mean` (tests/test_big_inputs.py: float32 [-1, 3, 224, 224], NCHW) and
`gray-size` (uint8 [-1, -1, -1, 1], NHWC of any size: the mean pixel and the shape it was given), and
the digits classifier of benchmarks/peers (`heavy-onnx`, float32 [-1, 3, 32, 32], values 0..1).
"""

from __future__ import annotations

import io
import json

import httpx
import numpy as np
import onnx
import pytest
import yaml
from onnx import TensorProto, helper
from PIL import Image

from benchmarks.peers import heavy
from tests.hubserver import HubProcess
from tests.test_big_inputs import image_mean_package

MAX_PIXELS = 1_000_000
GRAY = "gray-size"


def gray_size_package(root) -> str:
    """image uint8 [-1, -1, -1, 1] -> mean float32 [-1] (of each image), size int64 [4] (its shape)."""
    root.mkdir(parents=True)
    image = helper.make_tensor_value_info("image", TensorProto.UINT8, [None, None, None, 1])
    mean = helper.make_tensor_value_info("mean", TensorProto.FLOAT, [None])
    size = helper.make_tensor_value_info("size", TensorProto.INT64, [4])
    nodes = [
        helper.make_node("Cast", ["image"], ["floats"], to=TensorProto.FLOAT),
        helper.make_node("ReduceMean", ["floats"], ["mean"], axes=[1, 2, 3], keepdims=0),
        helper.make_node("Shape", ["image"], ["size"]),
    ]
    graph = helper.make_graph(nodes, GRAY, [image], [mean, size])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    onnx.save(model, str(root / "model.onnx"))
    manifest = {
        "name": GRAY, "version": "1.0.0", "task": "image-classification", "framework": "onnx",
        "summary": "The mean and shape of a grayscale image", "artifact": "model.onnx",
        "examples": "examples.json",
    }  # fmt: skip
    (root / "aid.yaml").write_text(yaml.safe_dump(manifest, sort_keys=False))
    (root / "README.md").write_text(f"# {GRAY}\n\nThe mean and shape of an image.\n")
    example = {"inputs": {"image": [[[[2], [4]]]]}, "outputs": {"mean": [3.0], "size": [1, 1, 2, 1]}}
    (root / "examples.json").write_text(json.dumps([example]))
    return str(root)


def vector_package(root) -> str:
    """A model without an image input (published, not deployed)."""
    root.mkdir(parents=True)
    x = helper.make_tensor_value_info("x", TensorProto.FLOAT, [None, 4])
    y = helper.make_tensor_value_info("y", TensorProto.FLOAT, [None, 4])
    graph = helper.make_graph([helper.make_node("Identity", ["x"], ["y"])], "vector", [x], [y])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    onnx.save(model, str(root / "model.onnx"))
    manifest = {
        "name": "vector", "version": "1.0.0", "task": "regression", "framework": "onnx",
        "summary": "Four numbers in, the same out", "artifact": "model.onnx",
    }  # fmt: skip
    (root / "aid.yaml").write_text(yaml.safe_dump(manifest, sort_keys=False))
    (root / "README.md").write_text("# vector\n\nIdentity.\n")
    return str(root)


@pytest.fixture(scope="module")
def hub(tmp_path_factory):
    extra = {"AIDHUB_MAX_IMAGE_PIXELS": str(MAX_PIXELS)}
    server = HubProcess(tmp_path_factory.mktemp("raw-bodies"), extra_env=extra).start()
    try:
        packages = tmp_path_factory.mktemp("pkg")
        mean, gray = image_mean_package(packages / "image-mean"), gray_size_package(packages / GRAY)
        for package in (mean, gray, str(heavy.package())):
            done = server.aid("publish", package, "--deploy")
            assert done.returncode == 0, f"{done.stdout}{done.stderr}\n{server.output()}"
        done = server.aid("publish", vector_package(packages / "vector"))
        assert done.returncode == 0, f"{done.stdout}{done.stderr}"
        yield server
    finally:
        server.undeploy_all()
        server.stop()


def photo(width: int, height: int) -> Image.Image:
    """An RGB picture with gradients and noise, so that every channel and pixel counts."""
    y, x = np.mgrid[0:height, 0:width]
    noise = np.random.default_rng(3).integers(-30, 30, (height, width, 3))
    base = np.stack([x * 255 // width, y * 255 // height, (x + y) * 127 // (width + height)], -1)
    return Image.fromarray(np.clip(base + noise, 0, 255).astype(np.uint8))


def encoded(image: Image.Image, kind: str, **options) -> bytes:
    buffer = io.BytesIO()
    image.save(buffer, kind, **options)
    return buffer.getvalue()


def as_tensor(body: bytes) -> np.ndarray:
    """What the try-it page builds from an image: RGB, NCHW, float32 scaled 0..1."""
    pixels = np.asarray(Image.open(io.BytesIO(body)).convert("RGB").resize((224, 224), Image.BILINEAR))
    return (pixels.transpose(2, 0, 1)[None].astype(np.float32) / 255).astype(np.float32)


def json_answer(hub, tensor: np.ndarray) -> list[float]:
    """image-mean's answer to `tensor` sent as JSON."""
    reply = httpx.post(
        f"{hub.url}/api/v1/models/image-mean/predict", json={"inputs": {"image": tensor.tolist()}}, timeout=60
    )
    assert reply.status_code == 200, reply.text
    return reply.json()["outputs"]["mean"]


def predict(hub, name: str, body: bytes, content_type: str) -> httpx.Response:
    url = f"{hub.url}/api/v1/models/{name}/predict"
    return httpx.post(url, content=body, headers={"Content-Type": content_type}, timeout=60)


@pytest.mark.parametrize("kind", ["PNG", "JPEG"])
def test_an_image_body_gives_the_same_answer_as_its_json_tensor(hub, kind):
    body = encoded(photo(224, 224), kind)
    reply = predict(hub, "image-mean", body, f"image/{kind.lower()}")
    assert reply.status_code == 200, reply.text
    assert reply.headers["X-Image-Input"] == f"224x224 {kind} not resized, RGB, float32 scaled 0..1, NCHW"
    assert reply.json()["outputs"]["mean"] == json_answer(hub, as_tensor(body))
    assert reply.json()["outputs"]["mean"][0] > 0.1  # a real picture, not zeros


def test_a_digit_drawn_as_a_png_is_read_by_the_digits_model_as_its_json_tensor(hub):
    from sklearn.datasets import load_digits

    digits = load_digits()
    ink = np.minimum(digits.images[-3] * 16, 255).astype(np.uint8)  # 0..16 as 0..255
    picture = Image.fromarray(ink).resize((96, 96), Image.NEAREST)
    body = encoded(picture, "PNG")
    url = f"{hub.url}/api/v1/models/{heavy.NAME}/predict"
    reply = predict(hub, heavy.NAME, body, "image/png")
    assert reply.status_code == 200, reply.text
    assert reply.headers["X-Image-Input"] == "96x96 PNG resized to 32x32, RGB, float32 scaled 0..1, NCHW"
    pixels = np.asarray(Image.open(io.BytesIO(body)).convert("RGB").resize((32, 32), Image.BILINEAR))
    tensor = pixels.transpose(2, 0, 1)[None].astype(np.float32) / 255
    as_json = httpx.post(url, json={"inputs": {"image": tensor.tolist()}}, timeout=60)
    assert reply.json()["outputs"] == as_json.json()["outputs"]
    assert reply.json()["outputs"]["label"] == [digits.target[-3]]


def test_an_image_of_another_size_is_resized_and_says_so(hub):
    body = encoded(photo(320, 200), "PNG")
    reply = predict(hub, "image-mean", body, "image/png")
    assert reply.status_code == 200, reply.text
    assert reply.headers["X-Image-Input"] == "320x200 PNG resized to 224x224, RGB, float32 scaled 0..1, NCHW"
    assert reply.json()["outputs"]["mean"] == json_answer(hub, as_tensor(body))
    jpeg = encoded(photo(900, 700), "JPEG", quality=95)  # decoded at half size (draft), then resized
    reply = predict(hub, "image-mean", jpeg, "image/jpeg")
    assert reply.headers["X-Image-Input"].startswith("900x700 JPEG resized to 224x224, RGB")
    assert reply.json()["outputs"]["mean"] == pytest.approx(json_answer(hub, as_tensor(jpeg)), abs=2e-3)


def test_a_grayscale_uint8_input_of_any_size_gets_the_image_as_it_is(hub):
    image = photo(50, 30)
    reply = predict(hub, GRAY, encoded(image, "PNG"), "image/png")
    assert reply.status_code == 200, reply.text
    assert reply.headers["X-Image-Input"] == "50x30 PNG not resized, L, uint8 0..255, NHWC"
    gray = np.asarray(image.convert("L"))
    assert reply.json()["outputs"] == {
        "mean": [pytest.approx(float(gray.mean()), rel=1e-5)],
        "size": [1, 30, 50, 1],
    }


def test_a_jpeg_is_turned_upright_by_its_exif_orientation(hub):
    exif = Image.Exif()
    exif[0x0112] = 6  # stored 60x20, shown rotated a quarter turn: 20 wide, 60 high
    reply = predict(hub, GRAY, encoded(photo(60, 20), "JPEG", exif=exif), "image/jpeg")
    assert reply.status_code == 200, reply.text
    assert reply.json()["outputs"]["size"] == [1, 60, 20, 1]


@pytest.mark.parametrize(
    ("body", "content_type", "status", "start"),
    [
        (b"hello", "image/png", 422, "The body is not a PNG or JPEG image (Content-Type: image/png): "),
        (b"GIF89a" + bytes(40), "image/jpeg", 422, "The body is not a PNG or JPEG image (Content-Type: im"),
        (b"", "image/png", 422, "The body is not a PNG or JPEG image"),
        (b"GIF89a", "image/gif", 415, "Content-Type image/gif is not read by the hub; send the image as"),
    ],
)  # fmt: skip
def test_a_body_that_is_not_a_png_or_jpeg_is_refused_naming_it(hub, body, content_type, status, start):
    reply = predict(hub, "image-mean", body, content_type)
    assert reply.status_code == status, reply.text
    assert reply.json()["error"].startswith(start)


def test_a_truncated_image_is_a_422(hub):
    body = encoded(photo(224, 224), "PNG")
    reply = predict(hub, "image-mean", body[: len(body) // 2], "image/png")
    assert reply.status_code == 422, reply.text
    assert reply.json()["error"].startswith("The image/png body cannot be decoded: ")


def test_an_image_over_the_pixel_limit_is_refused_before_it_is_decoded(hub):
    body = encoded(Image.new("L", (2000, 1000)), "PNG")  # 2 MP of zeros: a few KB
    assert len(body) < 20_000
    reply = predict(hub, "image-mean", body, "image/png")
    assert reply.status_code == 413, reply.text
    assert reply.json()["error"] == (
        "The image is 2000x1000 (2,000,000 pixels), over the limit of 1,000,000 pixels per image. "
        "Send a smaller image, or raise AIDHUB_MAX_IMAGE_PIXELS on the hub."
    )


def test_an_image_for_a_model_without_an_image_input_names_its_inputs(hub):
    reply = predict(hub, "vector", encoded(photo(16, 16), "PNG"), "image/png")
    assert reply.status_code == 422, reply.text
    assert reply.json()["error"] == (
        "A image/png body fits a model with one image input ([N, C, H, W] or [N, H, W, C], C 1 or 3, "
        'float or uint8); vector takes x float32 [-1, 4]. Send JSON {"inputs": {...}} or a .npy tensor.'
    )


def infer(hub, request: dict) -> httpx.Response:
    return httpx.post(f"{hub.url}/v2/models/{GRAY}/infer", json=request, timeout=60)


def read_binary_reply(reply: httpx.Response) -> tuple[dict, dict]:
    """(JSON header, {output: array}) of a v2 reply, read by hand as the extension lays it out."""
    length = int(reply.headers["Inference-Header-Content-Length"])
    header = json.loads(reply.content[:length])
    arrays, offset = {}, length
    for output in header["outputs"]:
        size = (output.get("parameters") or {}).get("binary_data_size")
        if size is None:
            continue
        dtype = {"FP32": "<f4", "INT64": "<i8"}[output["datatype"]]
        arrays[output["name"]] = np.frombuffer(reply.content[offset : offset + size], dtype).reshape(
            output["shape"]
        )
        offset += size
    assert offset == len(reply.content)
    return header, arrays


GRAY_INPUT = {"name": "image", "shape": [1, 2, 3, 1], "datatype": "UINT8", "data": [1, 2, 3, 4, 5, 9]}


def test_v2_binary_data_output_sends_every_output_as_bytes_after_the_json(hub):
    reply = infer(hub, {"inputs": [GRAY_INPUT], "parameters": {"binary_data_output": True}})
    assert reply.status_code == 200, reply.text
    assert reply.headers["Content-Type"] == "application/octet-stream"
    header, arrays = read_binary_reply(reply)
    assert [(o["name"], o["datatype"], o["shape"], o["parameters"]) for o in header["outputs"]] == [
        ("mean", "FP32", [1], {"binary_data_size": 4}),
        ("size", "INT64", [4], {"binary_data_size": 32}),
    ]
    assert arrays["mean"].tolist() == [4.0] and arrays["size"].tolist() == [1, 2, 3, 1]
    assert header["model_name"] == GRAY and header["id"] == reply.headers["X-Prediction-Id"]


def test_v2_an_outputs_own_binary_data_overrides_the_request_default(hub):
    outputs = [{"name": "size", "parameters": {"binary_data": False}}, {"name": "mean"}]
    request = {"inputs": [GRAY_INPUT], "outputs": outputs, "parameters": {"binary_data_output": True}}
    header, arrays = read_binary_reply(infer(hub, request))
    assert [o["name"] for o in header["outputs"]] == ["size", "mean"]
    assert header["outputs"][0]["data"] == [1, 2, 3, 1] and arrays["mean"].tolist() == [4.0]
    only = infer(
        hub, {"inputs": [GRAY_INPUT], "outputs": [{"name": "size", "parameters": {"binary_data": True}}]}
    )
    header, arrays = read_binary_reply(only)
    assert list(arrays) == ["size"] and arrays["size"].tolist() == [1, 2, 3, 1]
    plain = infer(hub, {"inputs": [GRAY_INPUT]})
    assert plain.headers["Content-Type"] == "application/json"
    assert "Inference-Header-Content-Length" not in plain.headers
    assert plain.json()["outputs"][1]["data"] == [1, 2, 3, 1]


def test_v2_a_bad_binary_flag_is_a_400_before_the_model_is_called(hub):
    reply = infer(hub, {"inputs": [GRAY_INPUT], "parameters": {"binary_data_output": "yes"}})
    assert (reply.status_code, reply.json()["error"]) == (
        400,
        "\"binary_data_output\" must be true or false, not 'yes'.",
    )
    reply = infer(hub, {"inputs": [GRAY_INPUT], "outputs": ["mean"]})
    assert (reply.status_code, reply.json()["error"]) == (
        400,
        '"outputs" must be a list of {"name", "parameters"} objects.',
    )


def test_the_api_document_names_the_raw_body_types(hub):
    paths = httpx.get(f"{hub.url}/api/v1/openapi.json").json()["paths"]
    predict_types = paths["/api/v1/models/{name}/predict"]["post"]["requestBody"]["content"]
    assert list(predict_types) == ["application/json", "application/x-npy", "image/png", "image/jpeg"]
    infer = paths["/v2/models/{name}/infer"]["post"]
    assert list(infer["requestBody"]["content"]) == ["application/json", "application/octet-stream"]
    assert list(infer["responses"]["200"]["content"]) == ["application/json", "application/octet-stream"]
    assert "Inference-Header-Content-Length" in infer["responses"]["200"]["headers"]


def test_a_16_bit_grayscale_png_gives_its_high_byte_and_a_0_limit_is_pillows_own():
    from web.imagebodies import ImageInput, decode

    levels = np.arange(0, 65536, 257, dtype=np.uint16).reshape(16, 16)  # 0, 257, ... 65535
    target = ImageInput("image", "NHWC", 1, None, None, "uint8")
    tensor, done = decode(encoded(Image.fromarray(levels), "PNG"), "image/png", target, 0)
    assert done == "16x16 PNG not resized, L, uint8 0..255, NHWC"
    assert tensor.reshape(16, 16).tolist() == (levels >> 8).tolist()
