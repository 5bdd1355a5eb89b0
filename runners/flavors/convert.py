"""JSON values <-> numpy arrays, shared by every flavor."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any, Protocol

import numpy as np

NUMPY_DTYPES = {
    "float16": np.float16, "float32": np.float32, "float64": np.float64,
    "int8": np.int8, "int16": np.int16, "int32": np.int32, "int64": np.int64,
    "uint8": np.uint8, "uint16": np.uint16, "uint32": np.uint32, "uint64": np.uint64,
    "bool": np.bool_, "string": np.object_,
}  # fmt: skip


class InputError(ValueError):
    """The request's inputs do not fit the model's schema (reported to the caller as 422)."""


class Model(Protocol):
    def predict(self, inputs: dict) -> dict: ...


def to_array(name: str, value: Any, dtype: str, shape: list | None = None) -> np.ndarray:
    """Convert one JSON input (or a numpy array: a binary input from the hub) to a numpy array of
    `dtype`, checking rank and fixed sizes. An array of that dtype is used as it is, not copied."""
    if dtype not in NUMPY_DTYPES:
        raise InputError(f"Input {name!r} has unsupported dtype {dtype!r}.")
    if isinstance(value, np.ndarray) and value.dtype == NUMPY_DTYPES[dtype] and dtype != "string":
        check_shape(name, value.shape, shape)
        return value
    try:
        array = np.asarray(value, dtype=NUMPY_DTYPES[dtype])
    except (TypeError, ValueError, OverflowError) as e:
        raise InputError(f"Input {name!r} cannot be read as {dtype}: {e}") from e
    if dtype == "string" and array.size and not all(isinstance(v, str) for v in array.flat):
        raise InputError(f"Input {name!r} must hold strings (dtype string).")
    check_shape(name, array.shape, shape)
    return array


def check_shape(name: str, actual: tuple, expected: list | None) -> None:
    """Raise InputError when `actual` does not match `expected` (None or -1 = any size)."""
    if expected is None:
        return
    if len(actual) != len(expected):
        raise InputError(
            f"Input {name!r} must have {len(expected)} dimension(s) {_shape_text(expected)}, "
            f"got shape {list(actual)}."
        )
    for size, want in zip(actual, expected, strict=True):
        if isinstance(want, int) and want >= 0 and size != want:
            raise InputError(f"Input {name!r} must have shape {_shape_text(expected)}, got {list(actual)}.")


def _shape_text(shape: list) -> str:
    return "[" + ", ".join("-1" if not isinstance(d, int) or d < 0 else str(d) for d in shape) + "]"


def require_inputs(inputs: Any, names: list[str]) -> dict:
    """Check that `inputs` is a mapping holding every name in `names`."""
    if not isinstance(inputs, dict):
        raise InputError(f"'inputs' must be an object mapping input names to values: {names}.")
    missing = [n for n in names if n not in inputs]
    if missing:
        raise InputError(f"Missing input(s) {missing}; this model takes {names}.")
    unknown = [n for n in inputs if n not in names]
    if unknown:
        raise InputError(f"Unknown input(s) {unknown}; this model takes {names}.")
    return inputs


def to_json(value: Any) -> Any:
    """numpy arrays, scalars, bytes and containers -> plain JSON-able values."""
    if isinstance(value, np.ndarray):
        return to_json(value.tolist()) if value.dtype == np.object_ else value.tolist()
    if isinstance(value, np.generic):
        return value.item()
    if isinstance(value, bytes):
        return value.decode("utf-8", errors="replace")
    if isinstance(value, dict):
        return {str(k): to_json(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [to_json(v) for v in value]
    return value


def name_outputs(result: Any, names: list[str], zip_sequences: bool = False) -> dict:
    """A dict result is the outputs; with `zip_sequences` a tuple/list is zipped with `names`;
    any other value goes under the first name (or 'output')."""
    if isinstance(result, dict):
        return {str(k): to_json(v) for k, v in result.items()}
    if zip_sequences and isinstance(result, tuple | list) and len(names) > 1:
        if len(result) != len(names):
            raise ValueError(f"Model returned {len(result)} values but declares outputs {names}.")
        return {n: to_json(v) for n, v in zip(names, result, strict=True)}
    if zip_sequences and isinstance(result, tuple | list) and len(result) == 1:
        result = result[0]
    return {(names[0] if names else "output"): to_json(result)}


def artifact_path(package_dir: Path, artifact: str | None, framework: str) -> Path:
    """The artifact's absolute path; a clear error when it is missing."""
    if not artifact:
        raise FileNotFoundError(f"Framework {framework} needs 'artifact' in aid.yaml.")
    path = Path(package_dir) / artifact
    if not path.exists():
        raise FileNotFoundError(f"Artifact {artifact!r} not found in package {package_dir}.")
    return path


def cpu_count() -> int:
    """CPUs this process may run on (respects affinity, unlike os.cpu_count)."""
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except AttributeError:
        return max(1, os.cpu_count() or 1)
