"""What the model page shows a developer: sample inputs and copy-able calls of the prediction API.

Pure functions from values to text. Every value may come from a hostile package, so the shell
snippets quote each argument with `shlex.quote` and the page escapes the text as usual.
"""

from __future__ import annotations

import json
import shlex
from math import prod
from pprint import pformat
from urllib.parse import urlsplit

from web.v2 import V2_DTYPES

MAX_PLACEHOLDER_VALUES = 1024
ZEROS = {"string": "", "bool": False}
NUMPY_DTYPES = {"string": "object_", "bool": "bool_"}  # else numpy's name is the schema's


def placeholder(spec: dict):
    """A value that fits a tensor spec (dynamic dims as 1), or None when it would be too big."""
    shape = [1 if d in (-1, None) else int(d) for d in spec.get("shape") or []]
    if prod(shape) > MAX_PLACEHOLDER_VALUES:
        return None
    dtype = spec.get("dtype", "float32")
    value = ZEROS.get(dtype, 0.0 if dtype.startswith("float") else 0)
    for size in reversed(shape):
        value = [value] * size
    return value


def sample_inputs(examples: list | None, schema: dict) -> dict:
    """The first example's inputs, else a placeholder per input of the schema."""
    for example in examples or []:
        if isinstance(example, dict) and isinstance(example.get("inputs"), dict):
            return example["inputs"]
    return {name: placeholder(spec) for name, spec in schema.items()}


def _curl(url: str, body: dict) -> str:
    return (
        f"curl -X POST {shlex.quote(url)} \\\n"
        "  -H 'Content-Type: application/json' \\\n"
        f"  -d {shlex.quote(json.dumps(body))}"
    )


def curl_predict(url: str, inputs: dict) -> str:
    """`curl` for POST /api/v1/models/<name>/predict with {"inputs": ...}."""
    return _curl(url, {"inputs": inputs})


def _flatten(value) -> list:
    if not isinstance(value, list):
        return [value]
    return [leaf for item in value for leaf in _flatten(item)]


def _shape(value) -> list[int]:
    shape = []
    while isinstance(value, list):
        shape.append(len(value))
        value = value[0] if value else None
    return shape


def v2_tensor(name: str, value, spec: dict) -> dict:
    datatype = V2_DTYPES.get(spec.get("dtype", ""), "FP32")
    return {"name": name, "shape": _shape(value), "datatype": datatype, "data": _flatten(value)}


def curl_v2(url: str, inputs: dict, schema: dict) -> str:
    """`curl` for the Open Inference Protocol v2 route POST /v2/models/<name>/infer."""
    tensors = [v2_tensor(n, v, schema.get(n) or {}) for n, v in inputs.items() if v is not None]
    return _curl(url, {"inputs": tensors})


# --- Python and CLI snippets: every hostile value goes in as a Python literal (repr) or shell-quoted ----


def _literal(value, indent: int = 0) -> str:
    """`value` as a Python literal (strings by repr), wrapped to fit the page."""
    return pformat(value, width=100 - indent, compact=True, sort_dicts=False).replace(
        "\n", "\n" + " " * indent
    )


def python_requests(url: str, inputs: dict) -> str:
    """Python `requests` for POST /api/v1/models/<name>/predict."""
    return (
        "import requests\n\n"
        "reply = requests.post(\n"
        f"    {url!r},\n"
        f'    json={{"inputs": {_literal(inputs, 20)}}},\n'
        "    timeout=60,\n"
        ")\n"
        "reply.raise_for_status()\n"
        "prediction = reply.json()\n"
        'print(prediction["id"], prediction["outputs"])\n'
    )


def triton_endpoint(hub_url: str) -> tuple[str, bool]:
    """('host:port/prefix', ssl) for tritonclient.http from the hub's base URL (it takes no scheme)."""
    parts = urlsplit(hub_url)
    return parts.netloc + parts.path.rstrip("/"), parts.scheme == "https"


def _triton_input(name: str, value, spec: dict) -> str:
    dtype = spec.get("dtype", "float32")
    dtype = dtype if dtype in V2_DTYPES else "float32"
    array = f"np.array({_literal(value, 4)}, dtype=np.{NUMPY_DTYPES.get(dtype, dtype)})"
    return (
        f"array = {array}\n"
        f"tensor = httpclient.InferInput({name!r}, list(array.shape), {V2_DTYPES[dtype]!r})\n"
        "tensor.set_data_from_numpy(array)\n"
        "inputs.append(tensor)\n"
    )


def python_triton(hub_url: str, name: str, version: str | None, inputs: dict, schema: dict) -> str:
    """tritonclient.http against the hub's Open Inference Protocol v2 routes (/v2/models/<name>)."""
    url, ssl = triton_endpoint(hub_url)
    tensors = "".join(_triton_input(n, v, schema.get(n) or {}) for n, v in inputs.items() if v is not None)
    pinned = f", model_version={version!r}" if version else ""
    return (
        "import numpy as np\n"
        "import tritonclient.http as httpclient\n\n"
        f"client = httpclient.InferenceServerClient({url!r}{', ssl=True' if ssl else ''})\n"
        f"inputs = []\n{tensors}"
        f"result = client.infer({name!r}, inputs{pinned})\n"
        'for output in result.get_response()["outputs"]:\n'
        '    print(output["name"], result.as_numpy(output["name"]))\n'
    )


def aid_predict(hub_url: str, ref: str, inputs: dict) -> str:
    """The `aid predict` command line for NAME[@VERSION] on this hub."""
    return (
        f"aid --hub {shlex.quote(hub_url.rstrip('/'))} predict {shlex.quote(ref)} \\\n"
        f"  --inputs {shlex.quote(json.dumps(inputs))}"
    )
