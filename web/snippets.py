"""What the model page shows a developer: sample inputs and copy-able calls of the prediction API.

Pure functions from values to text. Every value may come from a hostile package, so the shell
snippets quote each argument with `shlex.quote` and the page escapes the text as usual.
"""

from __future__ import annotations

import json
import shlex
from math import prod

from web.v2 import V2_DTYPES

MAX_PLACEHOLDER_VALUES = 1024
ZEROS = {"string": "", "bool": False}


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


def prefill(inputs: dict, name: str) -> str:
    """The JSON text a try-it field starts with ('' when there is no value)."""
    value = inputs.get(name)
    return "" if value is None else json.dumps(value)


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
