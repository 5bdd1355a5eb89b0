"""The manifest's `batching:` field: adaptive batching of concurrent calls (runners/flavors/batching.py).

Off unless the manifest turns it on: only the package's author knows that each row's answer depends
on that row alone, which joining calls into one batch assumes.
"""

from __future__ import annotations

from collections.abc import Callable

DEFAULT_BATCHING = {"enabled": False, "max_batch_size": 32, "max_latency_ms": 10}
BATCHING_HINT = "{enabled: true, max_batch_size: 32, max_latency_ms: 10} (or true / false)"
MAX_BATCH_SIZE = 4096
MAX_BATCH_LATENCY_MS = 1000


def batching_settings(value) -> dict:
    """A stored manifest's `batching` with the defaults filled in (versions published before the
    field existed have none)."""
    return {**DEFAULT_BATCHING, **(value if isinstance(value, dict) else {})}


def check_batching(value, fail: Callable[[str, str], None]) -> dict:
    """`batching:` true / false, or {enabled, max_batch_size, max_latency_ms}, normalised; problems go
    to `fail(path, message)`. A mapping without `enabled` turns batching on: its settings say it is wanted."""
    if value is None:
        return dict(DEFAULT_BATCHING)
    if isinstance(value, bool):
        value = {"enabled": value}
    if not isinstance(value, dict):
        fail("batching", f"must be {BATCHING_HINT}")
        return dict(DEFAULT_BATCHING)
    for key in value:
        if key not in DEFAULT_BATCHING:
            fail(f"batching.{key}", f"unknown key; use {', '.join(DEFAULT_BATCHING)}")
    enabled = value.get("enabled", True)
    if not isinstance(enabled, bool):
        fail("batching.enabled", f"{enabled!r} must be true or false")
    size = _number(value, "max_batch_size", int, MAX_BATCH_SIZE, "rows, such as 32", fail)
    wait = _number(value, "max_latency_ms", int | float, MAX_BATCH_LATENCY_MS,
                   "milliseconds, such as 10 (0: never wait for more calls)", fail)  # fmt: skip
    return {"enabled": enabled is True, "max_batch_size": size, "max_latency_ms": wait}


def _number(value: dict, key: str, kind, top: int, unit: str, fail) -> int | float:
    number = value.get(key, DEFAULT_BATCHING[key])
    low = 1 if kind is int else 0
    if not isinstance(number, kind) or isinstance(number, bool) or not low <= number <= top:
        fail(f"batching.{key}", f"{number!r} must be a number from {low} to {top} {unit}")
        return DEFAULT_BATCHING[key]
    return number


def check_batch_inputs(batching: dict, inputs: dict) -> list[tuple[str, str]]:
    """(path, message) for each declared input whose first dimension is not -1 while batching is on:
    batching joins calls along the first dimension."""
    if not batching.get("enabled"):
        return []
    return [
        ("batching.enabled", f"input {name!r} has shape {shape}, but batching needs every input's first "
         "dimension to be -1 (the batch): make it [-1, ...] or set batching.enabled: false")
        for name, tensor in inputs.items()
        if (shape := tensor.get("shape") or []) == [] or shape[0] != -1
    ]  # fmt: skip
