"""Flavor adapters: load a model of one framework and predict on JSON values.

This package is copied into every generated service folder as `aid_flavors` and runs inside the
model's own virtualenv, so it imports only the standard library, numpy and, lazily, its runtime.
"""

from __future__ import annotations

import importlib
from pathlib import Path

from .convert import InputError, Model

FLAVOR_MODULES = {
    "onnx": "onnx_flavor",
    "torch": "torch_flavor",
    "sklearn": "sklearn_flavor",
    "python": "python_flavor",
}
DEVICES = ("cpu", "cuda", "auto")

__all__ = ["DEVICES", "FLAVOR_MODULES", "InputError", "Model", "load_model"]


def load_model(
    framework: str,
    package_dir: str | Path,
    artifact: str | None,
    entrypoint: str | None,
    inputs: dict,
    outputs: dict,
    device: str = "cpu",
    threads: int | None = None,
) -> Model:
    """Load the package's model; the result has `predict(inputs: dict) -> dict` on JSON values.

    `threads`: how many threads one prediction may use (the CPUs of one server worker); None: all."""
    if framework not in FLAVOR_MODULES:
        known = ", ".join(FLAVOR_MODULES)
        raise ValueError(f"Framework {framework!r} is not supported; use one of {known}.")
    if device not in DEVICES:
        raise ValueError(f"Device {device!r} is not supported; use one of {', '.join(DEVICES)}.")
    module = importlib.import_module(f".{FLAVOR_MODULES[framework]}", __name__)
    args = (Path(package_dir), artifact, entrypoint, inputs or {}, outputs or {}, device)
    return module.load(*args, threads=threads)
