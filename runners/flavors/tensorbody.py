"""Numeric inputs as raw bytes from the hub to a model server, without JSON lists on either side.

A body is a JSON header `{"inputs": [{"name", "dtype", "shape"}, ...]}` of `HEADER_LENGTH` bytes,
then each array's bytes (C order, little-endian) in header order: the layout of the Open Inference
Protocol's binary tensor extension, with aidhub's dtype names. An image of 1x3x224x224 float32 is
602,112 bytes here against about 3 MB as JSON, and the server reads it with `np.frombuffer`.

The route (`POST /aidhub-tensors/predict`) is for the hub, which logs the call itself: where the
server records direct calls (a hub token is set), a call without the token is refused.

Imports only the standard library at module level (numpy and Starlette inside functions).
"""

from __future__ import annotations

import json

ROUTE_PREFIX = "/aidhub-tensors"
PREDICT_ROUTE = ROUTE_PREFIX + "/predict"
HEADER_LENGTH = "x-aidhub-header-length"
DTYPES = (
    "float16", "float32", "float64", "int8", "int16", "int32", "int64",
    "uint8", "uint16", "uint32", "uint64", "bool",
)  # fmt: skip


class TensorBodyError(ValueError):
    """The body does not follow the layout above (answered with 400)."""


def encode(arrays: dict) -> tuple[bytes, int]:
    """(body, header length) for numpy `arrays` of the DTYPES in native (little-endian) byte order."""
    specs = [{"name": n, "dtype": str(a.dtype), "shape": list(a.shape)} for n, a in arrays.items()]
    header = json.dumps({"inputs": specs}).encode()
    return b"".join([header, *(a.tobytes() for a in arrays.values())]), len(header)


def decode(body: bytes, header_length: str | None) -> dict:
    """The arrays of a body (read-only views on it, no copy); TensorBodyError naming what is wrong."""
    import numpy as np

    if not (header_length or "").isdigit() or int(header_length) > len(body):
        raise TensorBodyError(f"The {HEADER_LENGTH} header must give the JSON header's length in bytes.")
    try:
        specs = json.loads(body[: int(header_length)])["inputs"]
    except (ValueError, KeyError, TypeError) as e:
        raise TensorBodyError(f'The header must be JSON {{"inputs": [...]}}: {e}') from e
    arrays, offset = {}, int(header_length)
    for spec in specs:
        name, dtype, shape = _spec(spec)
        count = _count(shape)
        size = count * np.dtype(dtype).itemsize
        if offset + size > len(body):
            raise TensorBodyError(f"Input {name!r}: {size} bytes announced, {len(body) - offset} left.")
        array = np.frombuffer(body, np.dtype(dtype).newbyteorder("<"), count, offset).reshape(shape)
        arrays[name], offset = array, offset + size
    if offset != len(body):
        raise TensorBodyError(f"{len(body) - offset} bytes follow the last input.")
    return arrays


def _spec(spec) -> tuple[str, str, list[int]]:
    try:
        name, dtype, shape = spec["name"], spec["dtype"], [int(d) for d in spec["shape"]]
    except (KeyError, TypeError, ValueError) as e:
        raise TensorBodyError(f'Each input needs "name", "dtype" and a "shape" of integers: {e}') from e
    if dtype not in DTYPES or any(d < 0 for d in shape):
        raise TensorBodyError(f"Input {name!r}: dtype must be one of {', '.join(DTYPES)}, shape >= 0.")
    return str(name), dtype, shape


def _count(shape: list[int]) -> int:
    count = 1
    for d in shape:
        count *= d
    return count


class TensorRoute:
    """The route's ASGI app; the service hands it its `dispatch` once the model is loaded."""

    def __init__(self, direct_calls=None):
        self.direct_calls = direct_calls  # a calls.CallBuffer, or None (no hub token: open)
        self.dispatch = None

    def mount(self, service):
        """`service` (a BentoML service class) with this route mounted at ROUTE_PREFIX."""
        import bentoml
        from starlette.applications import Starlette
        from starlette.routing import Route

        app = Starlette(routes=[Route("/predict", self.predict, methods=["POST"])])
        return bentoml.asgi_app(app, path=ROUTE_PREFIX)(service)

    async def predict(self, request):
        from starlette.responses import JSONResponse, Response

        from .convert import InputError
        from .serving import json_body

        if self.direct_calls is not None and not self.direct_calls.from_hub(request.scope["headers"]):
            return JSONResponse({"error": "This route is the hub's; call POST /predict."}, status_code=403)
        if self.dispatch is None:  # the model is still loading
            return JSONResponse({"error": "The model is not loaded yet."}, status_code=503)
        try:
            inputs = decode(await request.body(), request.headers.get(HEADER_LENGTH))
            outputs, status = await self.dispatch(inputs), 200
        except TensorBodyError as e:
            outputs, status = {"error": str(e)}, 400
        except InputError as e:
            outputs, status = {"error": str(e)}, 422
        return Response(json_body(outputs), status_code=status, media_type="application/json")
