"""Small real packages for the tests, written into a folder."""

from __future__ import annotations

import io
import json
from pathlib import Path

import onnx
import yaml
from onnx import TensorProto, helper

from registry.package import pack


def double_graph(path: Path) -> None:
    """y = x * 2 for x float32 [batch, 2]."""
    two = helper.make_tensor("two", TensorProto.FLOAT, [], [2.0])
    graph = helper.make_graph(
        [helper.make_node("Mul", ["x", "two"], ["y"])], "double",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["batch", 2])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, ["batch", 2])], [two],
    )  # fmt: skip
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    onnx.save(model, str(path))


def onnx_package(root: Path, name: str = "doubler", version: str = "1.0.0", card: str = "", **fields) -> Path:
    root.mkdir(parents=True, exist_ok=True)
    double_graph(root / "model.onnx")
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
