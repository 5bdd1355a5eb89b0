"""The demo package the page tests publish: a tiny ONNX model (or a python one) with a hostile card."""

from __future__ import annotations

import json
from pathlib import Path

import onnx
import yaml
from onnx import TensorProto, helper

CARD = """# Demo adder

Adds one to every value. Trained on nothing at all.

<script>alert('card')</script>
<img src=x onerror="alert('img')">

[a bad link](javascript:alert('link')) and [a good one](https://example.org/docs).
"""


def onnx_model(path: Path) -> None:
    """A tiny graph y = Identity(x) with x float32 [-1, 2]."""
    x = helper.make_tensor_value_info("x", TensorProto.FLOAT, [None, 2])
    y = helper.make_tensor_value_info("y", TensorProto.FLOAT, [None, 2])
    graph = helper.make_graph([helper.make_node("Identity", ["x"], ["y"])], "demo", [x], [y])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    onnx.save(model, str(path))


def write_package(root: Path, card: str = CARD, examples=None, **manifest) -> Path:
    """`demo-adder` 1.0.0 in `root`; `manifest` overrides its aid.yaml fields (None removes one)."""
    root.mkdir(parents=True)
    fields = {
        "name": "demo-adder", "version": "1.0.0", "task": "regression", "framework": "onnx",
        "summary": "Adds one to each value", "tags": ["onnx", "tiny"], "artifact": "model.onnx",
        "examples": "examples.json",
    }  # fmt: skip
    fields = {k: v for k, v in {**fields, **manifest}.items() if v is not None}
    if fields["framework"] == "onnx":
        onnx_model(root / "model.onnx")
    else:
        (root / "predict.py").write_text(
            "class Model:\n    def predict(self, **inputs):\n        return inputs\n"
        )
    examples = [{"inputs": {"x": [[1.0, 2.0]]}}] if examples is None else examples
    (root / "examples.json").write_text(json.dumps(examples))
    (root / "README.md").write_text(card)
    (root / "aid.yaml").write_text(yaml.safe_dump(fields))
    return root


def demo_build(status: str, log: str) -> int:
    """A build row of demo-adder 1.0.0 (published first) left in `status`, as no worker will touch it:
    the queue never saw it. Its id."""
    from registry.models import BuildRow, VersionRow

    version = VersionRow.get(VersionRow.version == "1.0.0")
    assert version.model.name == "demo-adder"
    return BuildRow.create(version=version, status=status, log=log).id
