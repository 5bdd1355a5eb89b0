"""Checking JSON values against a tensor spec ({dtype, shape}) without numpy."""

from __future__ import annotations

from math import prod

INT_RANGES = {
    "int8": (-(2**7), 2**7 - 1), "int16": (-(2**15), 2**15 - 1),
    "int32": (-(2**31), 2**31 - 1), "int64": (-(2**63), 2**63 - 1),
    "uint8": (0, 2**8 - 1), "uint16": (0, 2**16 - 1),
    "uint32": (0, 2**32 - 1), "uint64": (0, 2**64 - 1),
}  # fmt: skip


def shape_of(value) -> list[int] | None:
    """The shape of a rectangular nested list ([] for a scalar); None when ragged."""
    if not isinstance(value, list):
        return []
    if not value:
        return [0]
    inner = [shape_of(v) for v in value]
    if any(s is None or s != inner[0] for s in inner):
        return None
    return [len(value), *inner[0]]


def leaves(value):
    if isinstance(value, list):
        for v in value:
            yield from leaves(v)
    else:
        yield value


def _leaf_ok(dtype: str, leaf) -> bool:
    if dtype == "string":
        return isinstance(leaf, str)
    if dtype == "bool":
        return isinstance(leaf, bool)
    if isinstance(leaf, bool):
        return False
    if dtype.startswith("float"):
        return isinstance(leaf, int | float)
    low, high = INT_RANGES[dtype]
    return isinstance(leaf, int) and low <= leaf <= high


def _shape_ok(expected: list[int], got: list[int]) -> bool:
    return len(expected) == len(got) and all(e in (-1, g) for e, g in zip(expected, got, strict=True))


def check_value(path: str, value, spec: dict) -> str | None:
    """Return a message naming `path`, the expected dtype/shape and what came, or None if it fits."""
    dtype, expected = spec.get("dtype"), spec.get("shape", [])
    got = shape_of(value)
    want = f"{dtype} with shape {expected}"
    if got is None:
        return f"{path}: expected {want}, got a ragged nested list (rows of different lengths)"
    if not _shape_ok(expected, got):
        return f"{path}: expected {want}, got shape {got}"
    bad = next((leaf for leaf in leaves(value) if not _leaf_ok(dtype, leaf)), _NONE)
    if bad is not _NONE:
        return f"{path}: expected {want}, got a value {bad!r} of type {type(bad).__name__}"
    return None


_NONE = object()


def check_inputs(inputs, schema: dict) -> list[str]:
    """Every problem of `inputs` (a dict of name -> value) against `schema`, named by field."""
    if not isinstance(inputs, dict):
        return [f"inputs: expected an object mapping {', '.join(schema)} to values"]
    problems = [
        f"inputs.{name}: missing ({spec['dtype']} with shape {spec['shape']})"
        for name, spec in schema.items()
        if name not in inputs
    ]
    problems += [
        f"inputs.{n}: unknown input; expected {', '.join(schema)}" for n in inputs if n not in schema
    ]
    for name, value in inputs.items():
        if name in schema:
            problem = check_value(f"inputs.{name}", value, schema[name])
            problems += [problem] if problem else []
    return problems


def row_width(spec: dict) -> int | None:
    """Elements per row (dims after the first), None when a dim is dynamic; 1 for a per-row scalar."""
    dims = spec.get("shape", [])[1:]
    return None if -1 in dims else prod(dims)
