"""Open Inference Protocol v2 (KServe / Triton HTTP), including the binary tensor extension."""

from __future__ import annotations

import json
import struct

import numpy as np
from flask import Blueprint, Response, jsonify, request

from hub.errors import Invalid
from web.auth import needs, public
from web.context import get_hub

blueprint = Blueprint("v2", __name__, url_prefix="/v2")
HEADER_LENGTH = "Inference-Header-Content-Length"
V2_DTYPES = {
    "float16": "FP16", "float32": "FP32", "float64": "FP64", "int8": "INT8", "int16": "INT16",
    "int32": "INT32", "int64": "INT64", "uint8": "UINT8", "uint16": "UINT16", "uint32": "UINT32",
    "uint64": "UINT64", "bool": "BOOL", "string": "BYTES",
}  # fmt: skip
NATIVE_DTYPES = {v: k for k, v in V2_DTYPES.items()}


@blueprint.get("")
@needs("read")
def server_metadata():
    return jsonify({"name": "aidhub", "version": "0.1.0", "extensions": ["binary_tensor_data"]})


@blueprint.get("/health/live")
@blueprint.get("/health/ready")
@public
def health():
    return jsonify({"live": True, "ready": True})


def _tensors(schema: dict) -> list[dict]:
    return [{"name": n, "datatype": V2_DTYPES[s["dtype"]], "shape": s["shape"]} for n, s in schema.items()]


@blueprint.get("/models/<path:name>")
@blueprint.get("/models/<path:name>/versions/<version>")
@needs("read")
def model_metadata(name, version=None):
    meta = get_hub().model_metadata(name, version)
    return jsonify({
        "name": name, "versions": meta["versions"], "platform": f"aidhub_{meta['framework']}",
        "inputs": _tensors(meta["inputs"]), "outputs": _tensors(meta["outputs"]),
    })  # fmt: skip


@blueprint.get("/models/<path:name>/ready")
@blueprint.get("/models/<path:name>/versions/<version>/ready")
@needs("read")
def model_ready(name, version=None):
    ready = get_hub().model_metadata(name, version)["ready"]
    return jsonify({"name": name, "ready": ready}), 200 if ready else 400


@blueprint.post("/models/<path:name>/infer")
@blueprint.post("/models/<path:name>/versions/<version>/infer")
@needs("predict")
def infer(name, version=None):
    header, blobs = _read_request()
    inputs = {t["name"]: _to_native(t, blobs) for t in _input_tensors(header)}
    hub = get_hub()
    reply = hub.predict(name, version, inputs)
    schema = hub.model_metadata(name, reply["version"])["outputs"]
    outputs = _to_v2(reply["outputs"], schema, header.get("outputs"))
    body = {"model_name": name, "model_version": reply["version"], "id": header.get("id") or reply["id"]}
    response = _response(body, outputs, _wants_binary(header))
    response.headers["X-Prediction-Id"] = reply["id"]
    return response


# --- request ------------------------------------------------------------------------------


def _read_request() -> tuple[dict, bytes]:
    raw = request.get_data()
    length = request.headers.get(HEADER_LENGTH)
    split = int(length) if length and length.isdigit() else len(raw)
    try:
        header = json.loads(raw[:split])
    except ValueError as e:
        raise Invalid(f"The inference request is not valid JSON: {e}") from e
    if not isinstance(header, dict):
        raise Invalid('The inference request must be a JSON object with "inputs".')
    return header, raw[split:]


def _input_tensors(header: dict) -> list[dict]:
    tensors = header.get("inputs")
    if not isinstance(tensors, list) or not all(isinstance(t, dict) and "name" in t for t in tensors):
        raise Invalid('"inputs" must be a list of {"name", "shape", "datatype", "data"} objects.')
    offset = 0
    for t in tensors:  # binary inputs follow the JSON header in request order
        size = (t.get("parameters") or {}).get("binary_data_size")
        if size is not None:
            t["_slice"] = (offset, offset + int(size))
            offset += int(size)
    return tensors


def _to_native(tensor: dict, blobs: bytes):
    name, datatype, shape = tensor["name"], tensor.get("datatype"), tensor.get("shape")
    if datatype not in NATIVE_DTYPES or not isinstance(shape, list):
        raise Invalid(f"Input {name!r}: datatype must be one of {', '.join(NATIVE_DTYPES)} and shape a list.")
    if "_slice" in tensor:
        start, end = tensor["_slice"]
        values = _decode_binary(blobs[start:end], datatype)
    else:
        values = np.asarray(tensor.get("data"), dtype=object).reshape(-1).tolist()
    try:
        array = np.asarray(values, dtype=object).reshape(shape)
    except ValueError as e:
        raise Invalid(f"Input {name!r}: {len(values)} values do not fill shape {shape}.") from e
    return array.tolist()


def _decode_binary(data: bytes, datatype: str) -> list:
    if datatype == "BYTES":
        out, i = [], 0
        while i < len(data):
            (n,) = struct.unpack_from("<I", data, i)
            out.append(data[i + 4 : i + 4 + n].decode())
            i += 4 + n
        return out
    return np.frombuffer(data, dtype=np.dtype(NATIVE_DTYPES[datatype])).tolist()


# --- response -----------------------------------------------------------------------------


def _to_v2(outputs: dict, schema: dict, requested) -> list[dict]:
    names = [o["name"] for o in requested] if isinstance(requested, list) and requested else list(outputs)
    tensors = []
    for name in names:
        if name not in outputs:
            raise Invalid(f"Output {name!r} does not exist; outputs: {', '.join(outputs)}.")
        dtype = (schema.get(name) or {}).get("dtype") or _guess_dtype(outputs[name])
        array = np.asarray(outputs[name], dtype=object if dtype == "string" else dtype)
        tensors.append(
            {"name": name, "datatype": V2_DTYPES[dtype], "shape": list(array.shape), "array": array}
        )
    return tensors


def _guess_dtype(value) -> str:
    kind = np.asarray(value).dtype.kind
    return {"b": "bool", "i": "int64", "u": "uint64", "f": "float64"}.get(kind, "string")


def _wants_binary(header: dict) -> set[str]:
    everything = (header.get("parameters") or {}).get("binary_data_output")
    requested = header.get("outputs") or []
    chosen = {o["name"] for o in requested if (o.get("parameters") or {}).get("binary_data")}
    return {"*"} if everything else chosen


def _response(body: dict, tensors: list[dict], binary: set[str]) -> Response:
    blobs = []
    for t in tensors:
        array = t.pop("array")
        if "*" in binary or t["name"] in binary:
            blob = _encode_binary(array, t["datatype"])
            t["parameters"] = {"binary_data_size": len(blob)}
            blobs.append(blob)
        else:
            t["data"] = array.reshape(-1).tolist()
    header = json.dumps({**body, "outputs": tensors}).encode()
    response = Response(header + b"".join(blobs), content_type="application/json")
    if blobs:
        response.content_type = "application/octet-stream"
        response.headers[HEADER_LENGTH] = str(len(header))
    return response


def _encode_binary(array: np.ndarray, datatype: str) -> bytes:
    if datatype == "BYTES":
        items = [str(v).encode() for v in array.reshape(-1)]
        return b"".join(struct.pack("<I", len(b)) + b for b in items)
    return np.ascontiguousarray(array).tobytes()
