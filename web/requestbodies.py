"""Reading the bodies of prediction calls: JSON (orjson first) and one numpy `.npy` tensor; writing
the replies (orjson first).

A 3 MB JSON image parses in about 7 ms with orjson against 30-75 ms with the standard library, on
the event loop every call shares. orjson refuses a few things the standard library reads (NaN,
Infinity, lone surrogates, integers past 64 bits); those bodies are read again by `json` so that
what the hub accepts does not change.
"""

from __future__ import annotations

import io
import json

import numpy as np
import orjson

from hub.errors import Invalid

NPY_TYPE = "application/x-npy"
CLIENT_HEADER = "X-Aidhub-Client"  # a caller's key: it stays on one version of a split alias
NPY_MAGIC = b"\x93NUMPY"


def parse_json(raw: bytes):
    """The JSON value of `raw`; ValueError when it is not JSON."""
    try:
        return orjson.loads(raw)
    except orjson.JSONDecodeError:
        return json.loads(raw)


def json_bytes(value) -> bytes:
    """`value` as JSON, by orjson (0.5 us for an iris reply, against 4); by the standard library where
    orjson's text would say something else: NaN and Infinity (orjson writes null, so any null sends
    the value there) and integers past 64 bits (orjson refuses them)."""
    try:
        text = orjson.dumps(value)
    except TypeError:  # orjson.JSONEncodeError
        return json.dumps(value).encode()
    return json.dumps(value).encode() if b"null" in text else text


def is_npy(content_type: str | None) -> bool:
    return (content_type or "").split(";")[0].strip().lower() == NPY_TYPE


def read_npy(raw: bytes):
    """The array of a `.npy` body: a numpy array, or nested lists for text (a string input).

    `allow_pickle=False`: an object array (which .npy stores as a pickle) is refused, never run."""
    if not raw.startswith(NPY_MAGIC):
        raise Invalid(
            f"The body is not a .npy file (it does not start with {NPY_MAGIC!r}); save it with numpy.save."
        )
    try:
        array = np.load(io.BytesIO(raw), allow_pickle=False)
    except ValueError as e:
        if "allow_pickle" in str(e):
            raise Invalid(
                "The .npy body holds Python objects (a pickle), which the hub does not load; "
                "send numbers, booleans or text (dtype float32, int64, bool, <U...)."
            ) from e
        raise Invalid(f"The .npy body cannot be read: {e}. Is it cut short? Save it with numpy.save.") from e
    except (EOFError, OSError) as e:
        raise Invalid(f"The .npy body cannot be read: {e}. Is it cut short? Save it with numpy.save.") from e
    if array.dtype.kind in "US":
        return array.astype(str).tolist()
    if array.dtype.kind not in "biuf":
        raise Invalid(f"The .npy body holds {array.dtype} values; send numbers, booleans or text.")
    return array


def single_input(schema: dict, model: str) -> str:
    """The name of a model's only input, for a body that carries one tensor."""
    if len(schema) != 1:
        raise Invalid(
            f"A {NPY_TYPE} body fits a model with one input; {model} takes {', '.join(schema)}. "
            'Send JSON {"inputs": {...}} or a v2 infer call with binary tensors.'
        )
    return next(iter(schema))
