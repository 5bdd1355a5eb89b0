"""Open Inference Protocol v2 (KServe / Triton HTTP), including the binary tensor extension.

Infer calls are answered by `web.fastpath.PredictFastPath` before Flask with `infer_reply`; the
Flask rules stay for url_for and run the same function. A binary input becomes a numpy array over
the request's bytes (no list of Python numbers) and goes to the model's server as bytes. Outputs go back
as bytes after the JSON when `parameters.binary_data_output` or an output's own `binary_data` asks.
"""

from __future__ import annotations

import struct

import numpy as np
from flask import Blueprint, Response, jsonify, request

from hub.errors import Invalid
from hub.hub import Hub
from web.auth import needs, public
from web.context import get_hub
from web.numbertext import only_numbers
from web.requestbodies import CLIENT_HEADER, json_bytes, parse_json

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
    """Answered by web.fastpath.PredictFastPath before Flask; kept for url_for."""
    length, client = request.headers.get(HEADER_LENGTH), request.headers.get(CLIENT_HEADER, "")
    data, headers = infer_reply(get_hub(), name, version, request.get_data(), length, client)
    return Response(data, headers=headers)


def infer_reply(
    hub: Hub, name: str, version: str | None, raw: bytes, header_length: str | None, client: str = ""
):
    """(body bytes, headers) of an infer call; raises HubError like every other use case. `client`:
    the caller's key, which keeps them on one version of a split alias."""
    header, inputs = read_inputs(raw, header_length)
    binary = _wants_binary(header)  # a bad request is refused before the model is called
    route = hub.route(name, version, client)  # picked once: the outputs' schema is the answering version's
    reply = hub.predict(name, version, inputs, client=client, route=route)
    outputs = _to_v2(reply["outputs"], route.version.outputs, header.get("outputs"))
    body = {"model_name": name, "model_version": reply["version"], "id": header.get("id") or reply["id"]}
    data, headers = _response(body, outputs, binary)
    return data, {**headers, "X-Prediction-Id": reply["id"]}


# --- request ------------------------------------------------------------------------------


def read_inputs(raw: bytes, header_length: str | None) -> tuple[dict, dict]:
    """(the request's JSON header, {input name: numpy array or nested lists}); raises Invalid."""
    header, text, blobs = _read_request(raw, header_length)
    numbers = only_numbers(text, header, _number_lists(header))  # before _input_tensors marks it
    return header, {t["name"]: _to_native(t, blobs, numbers) for t in _input_tensors(header)}


def _read_request(raw: bytes, length: str | None) -> tuple[dict, bytes, bytes]:
    """(the JSON header, its text, the binary tensors' bytes after it)."""
    split = int(length) if length and length.isdigit() else len(raw)
    text = raw[:split]
    try:
        header = parse_json(text)
    except ValueError as e:
        raise Invalid(f"The inference request is not valid JSON: {e}") from e
    if not isinstance(header, dict):
        raise Invalid('The inference request must be a JSON object with "inputs".')
    return header, text, raw[split:]


def _input_tensors(header: dict) -> list[dict]:
    tensors = header.get("inputs")
    if not isinstance(tensors, list) or not all(isinstance(t, dict) and "name" in t for t in tensors):
        raise Invalid('"inputs" must be a list of {"name", "shape", "datatype", "data"} objects.')
    offset = 0
    for t in tensors:  # binary inputs follow the JSON header in request order
        size = (t.get("parameters") or {}).get("binary_data_size")
        if size is None:
            continue
        if not isinstance(size, int) or isinstance(size, bool) or size < 0:
            raise Invalid(f"Input {t['name']!r}: binary_data_size must be a number of bytes, not {size!r}.")
        t["_slice"] = (offset, offset + size)
        offset += size
    return tensors


def _to_native(tensor: dict, blobs: bytes, numbers: bool = False):
    name, datatype, shape = tensor["name"], tensor.get("datatype"), tensor.get("shape")
    if datatype not in NATIVE_DTYPES or not isinstance(shape, list):
        raise Invalid(f"Input {name!r}: datatype must be one of {', '.join(NATIVE_DTYPES)} and shape a list.")
    if "_slice" in tensor and datatype != "BYTES":
        return _binary_array(name, blobs, tensor["_slice"], datatype, shape)
    if "_slice" in tensor:
        start, end = tensor["_slice"]
        values = _decode_binary(blobs[start:end], datatype)
    elif (array := _flat_array(tensor.get("data"), datatype, shape, numbers)) is not None:
        return array
    else:
        values = np.asarray(tensor.get("data"), dtype=object).reshape(-1).tolist()
    try:
        array = np.asarray(values, dtype=object).reshape(shape)
    except ValueError as e:
        raise Invalid(f"Input {name!r}: {len(values)} values do not fill shape {shape}.") from e
    return array.tolist()


# The Python types of JSON values that may fill each datatype: a bool is no number here.
JSON_TYPES = {"FP": {float, int}, "INT": {int}, "UINT": {int}, "BOOL": {bool}}


def _number_lists(header: dict) -> list[list]:
    """The `data` lists of the number tensors (not BYTES or BOOL): what `only_numbers` proves."""
    tensors = header.get("inputs")
    return [
        t["data"]
        for t in (tensors if isinstance(tensors, list) else [])
        if isinstance(t, dict)
        and isinstance(t.get("data"), list)
        and isinstance(t.get("datatype"), str)
        and t["datatype"] in NUMBER_DATATYPES
    ]


NUMBER_DATATYPES = {d for d in NATIVE_DTYPES if d.startswith(("FP", "INT", "UINT"))}


def _flat_array(data, datatype: str, shape: list, numbers: bool = False) -> np.ndarray | None:
    """Flat JSON `data` as an array of `datatype` (about 4 ms for an image's 150,528 values, 2 ms
    when `numbers`, against some 100 ms through lists of objects); None when it is anything else:
    nested, text, values of another type or out of range, or not filling `shape`. The caller then
    reads it value by value, which names the problem. `numbers`: `only_numbers` proved that the
    list holds no string, bool or null, so numpy need not be told each value's type."""
    allowed = JSON_TYPES.get(datatype.rstrip("0123456789"))
    if allowed is None or not isinstance(data, list):
        return None
    if numbers and datatype in NUMBER_DATATYPES:
        return _number_array(data, datatype, shape)
    if not set(map(type, data)) <= allowed:
        return None
    wide = np.int64 if allowed == {int} else NATIVE_DTYPES[datatype]  # the hub checks the range
    try:
        return np.asarray(data, dtype=wide).reshape(shape)
    except (ValueError, TypeError, OverflowError):
        return None


def _number_array(data: list, datatype: str, shape: list) -> np.ndarray | None:
    """`_flat_array` for a list of numbers only, in one numpy call: float64 for FP (Python's own
    floats, then cast as numpy would cast each value), the found dtype for INT, which is int64 only
    when every value is an integer that fits (a float makes it float64, a huge one uint64 or object)."""
    floats = datatype.startswith("FP")
    try:
        array = np.asarray(data, dtype=np.float64 if floats else None)
        if array.ndim != 1 or array.dtype.kind != ("f" if floats else "i"):
            return None  # nested lists, or values of another type: read value by value
        return array.astype(NATIVE_DTYPES[datatype] if floats else np.int64, copy=False).reshape(shape)
    except (ValueError, TypeError, OverflowError):
        return None


def _binary_array(name: str, blobs: bytes, where: tuple[int, int], datatype: str, shape: list) -> np.ndarray:
    """A view on the request's bytes (little-endian, as the extension sends them), not a copy."""
    dtype = np.dtype(NATIVE_DTYPES[datatype]).newbyteorder("<")
    start, end = where
    sized = all(isinstance(d, int) and not isinstance(d, bool) and d >= 0 for d in shape)
    count = int(np.prod(shape)) if sized else -1
    if count < 0 or end > len(blobs) or end - start != count * dtype.itemsize:
        raise Invalid(
            f"Input {name!r}: binary_data_size {end - start} does not hold shape {shape} of {datatype} "
            f"({max(count, 0) * dtype.itemsize} bytes; {len(blobs) - start} bytes came)."
        )
    return np.frombuffer(blobs, dtype, count, start).reshape(shape)


def _decode_binary(data: bytes, datatype: str) -> list:
    """BYTES elements: each a 4-byte little-endian length, then the bytes."""
    out, i = [], 0
    while i < len(data):
        (n,) = struct.unpack_from("<I", data, i)
        out.append(data[i + 4 : i + 4 + n].decode())
        i += 4 + n
    return out


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
    """The outputs to send as bytes after the JSON: "*" for all. The request's `binary_data_output`
    sets the default, an output's own `binary_data` overrides it (the extension's rule)."""
    everything = _flag(header, "binary_data_output")
    requested = header.get("outputs") or []
    if not isinstance(requested, list) or not all(
        isinstance(o, dict) and isinstance(o.get("name"), str) for o in requested
    ):
        raise Invalid('"outputs" must be a list of {"name", "parameters"} objects.')
    own = {o["name"]: _flag(o, "binary_data") for o in requested}
    if not everything:
        return {name for name, binary in own.items() if binary}
    return {"*"} | {f"-{name}" for name, binary in own.items() if binary is False}


def _flag(part: dict, name: str) -> bool | None:
    parameters = part.get("parameters")
    value = parameters.get(name) if isinstance(parameters, dict) else None
    if value is not None and not isinstance(value, bool):
        raise Invalid(f'"{name}" must be true or false, not {value!r}.')
    return value


def _response(body: dict, tensors: list[dict], binary: set[str]) -> tuple[bytes, dict]:
    blobs = []
    for t in tensors:
        array = t.pop("array")
        if t["name"] in binary or ("*" in binary and f"-{t['name']}" not in binary):
            blob = _encode_binary(array, t["datatype"])
            t["parameters"] = {"binary_data_size": len(blob)}
            blobs.append(blob)
        else:
            t["data"] = array.reshape(-1).tolist()
    header = json_bytes({**body, "outputs": tensors})
    if not blobs:
        return header, {"Content-Type": "application/json"}
    return header + b"".join(blobs), {
        "Content-Type": "application/octet-stream",
        HEADER_LENGTH: str(len(header)),
    }


def _encode_binary(array: np.ndarray, datatype: str) -> bytes:
    if datatype == "BYTES":
        items = [str(v).encode() for v in array.reshape(-1)]
        return b"".join(struct.pack("<I", len(b)) + b for b in items)
    return np.ascontiguousarray(array).tobytes()
