"""Small real packages for the tests, written into a folder."""

from __future__ import annotations

import io
import json
from pathlib import Path

import yaml

from cli.init import write_doubler_onnx
from registry.package import pack


def onnx_package(root: Path, name: str = "doubler", version: str = "1.0.0", card: str = "", **fields) -> Path:
    root.mkdir(parents=True, exist_ok=True)
    write_doubler_onnx(root / "model.onnx")
    manifest = {
        "name": name, "version": version, "task": "regression", "summary": "Doubles two numbers",
        "tags": ["onnx", "demo"], "framework": "onnx", "artifact": "model.onnx",
        "examples": "examples.json", "reference_data": "reference.csv", **fields,
    }  # fmt: skip
    (root / "aid.yaml").write_text(yaml.safe_dump(manifest, sort_keys=False))
    (root / "README.md").write_text(card or f"# {name}\n\nDoubles its input.\n")
    (root / "examples.json").write_text(
        json.dumps([{"inputs": {"x": [[1.0, 2.0]]}, "outputs": {"y": [[2.0, 4.0]]}}])
    )
    (root / "reference.csv").write_text("x.0,x.1\n1,2\n3,4\n")
    return root


def archive(root: Path) -> io.BytesIO:
    return io.BytesIO(pack(root))


def python_package(
    root: Path, name: str, version: str = "1.0.0", factor: float = 2.0, setup: str = ""
) -> Path:
    """A python-flavor model: y = x * factor. `setup` is Python run when the server loads it."""
    root.mkdir(parents=True, exist_ok=True)
    manifest = {
        "name": name, "version": version, "task": "regression", "summary": f"Multiplies by {factor}",
        "framework": "python", "entrypoint": "predict.py:Model", "examples": "examples.json",
        "inputs": {"x": {"dtype": "float64", "shape": [-1]}},
        "outputs": {"y": {"dtype": "float64", "shape": [-1]}},
    }  # fmt: skip
    (root / "aid.yaml").write_text(yaml.safe_dump(manifest, sort_keys=False))
    (root / "README.md").write_text(f"# {name}\n\nMultiplies its input by {factor}.\n")
    body = "\n".join("        " + line for line in (setup or "pass").splitlines())
    (root / "predict.py").write_text(
        f"class Model:\n    def setup(self):\n{body}\n\n"
        f"    def predict(self, x):\n        return {{'y': [v * {factor!r} for v in x]}}\n"
    )
    (root / "examples.json").write_text(json.dumps([{"inputs": {"x": [1.0]}, "outputs": {"y": [factor]}}]))
    return root
