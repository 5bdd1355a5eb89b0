"""`aid init`: write a small, valid, runnable package for a framework."""

from __future__ import annotations

import json
from pathlib import Path

import yaml

README = """# {name}

Describe what the model predicts, the data it learned from, how well it does and where it fails.

| input | meaning |
|---|---|
| x | two numbers |
"""

PREDICT_PY = '''"""A python-flavor model: setup() runs once, predict() per call."""


class Model:
    def setup(self):
        self.scale = 2.0

    def predict(self, x):
        return {"y": [[v * self.scale for v in row] for row in x]}
'''

SCHEMA = {
    "inputs": {"x": {"dtype": "float32", "shape": [-1, 2]}},
    "outputs": {"y": {"dtype": "float32", "shape": [-1, 2]}},
}


def _manifest(name: str, framework: str, artifact: str | None) -> dict:
    manifest = {
        "name": name, "version": "0.1.0", "task": "regression", "summary": f"A starter {framework} model",
        "license": "MIT", "tags": [framework], "framework": framework, **SCHEMA,
        "python": "3.11", "resources": {"cpu": 1, "memory": "1Gi", "gpu": 0},
        "reference_data": "reference.csv", "examples": "examples.json",
    }  # fmt: skip
    if artifact:
        manifest["artifact"] = artifact
    if framework == "python":
        manifest["entrypoint"] = "predict.py:Model"
    return manifest


def write_doubler_onnx(path: Path) -> None:
    """A real ONNX graph, y = x * 2 for x float32 [batch, 2]."""
    import onnx
    from onnx import TensorProto, helper

    two = helper.make_tensor("two", TensorProto.FLOAT, [], [2.0])
    graph = helper.make_graph(
        [helper.make_node("Mul", ["x", "two"], ["y"])], "double",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["batch", 2])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, ["batch", 2])], [two],
    )  # fmt: skip
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    onnx.save(model, str(path))


def _torch_artifact(path: Path) -> None:
    try:
        import torch
    except ImportError as e:
        raise RuntimeError("Writing a TorchScript starter needs torch: pip install torch") from e

    class Double(torch.nn.Module):
        def forward(self, x):
            return x * 2.0

    torch.jit.script(Double()).save(str(path))


def _sklearn_artifact(path: Path) -> None:
    try:
        import joblib
        from sklearn.linear_model import LinearRegression
    except ImportError as e:
        raise RuntimeError("Writing a scikit-learn starter needs it: pip install scikit-learn") from e
    model = LinearRegression().fit([[0.0, 0.0], [1.0, 1.0], [2.0, 1.0]], [[0.0, 0.0], [2.0, 2.0], [4.0, 2.0]])
    joblib.dump(model, path)


ARTIFACTS = {"onnx": ("model.onnx", write_doubler_onnx), "torch": ("model.pt", _torch_artifact),
             "sklearn": ("model.joblib", _sklearn_artifact)}  # fmt: skip


def init_package(directory: Path, framework: str, name: str) -> list[Path]:
    """Write the package files into `directory` (created; must be empty). Returns what was written."""
    directory.mkdir(parents=True, exist_ok=True)
    if any(directory.iterdir()):
        raise FileExistsError(f"{directory} is not empty; choose a new folder for the package.")
    artifact, write = ARTIFACTS.get(framework, (None, None))
    if write:
        write(directory / artifact)
    if framework == "python":
        (directory / "predict.py").write_text(PREDICT_PY)
    (directory / "aid.yaml").write_text(yaml.safe_dump(_manifest(name, framework, artifact), sort_keys=False))
    (directory / "README.md").write_text(README.format(name=name))
    examples = [{"inputs": {"x": [[1.0, 2.0]]}, "outputs": {"y": [[2.0, 4.0]]}}]
    (directory / "examples.json").write_text(json.dumps(examples, indent=2) + "\n")
    (directory / "reference.csv").write_text("x.0,x.1\n" + "".join(f"{i}.0,{i + 1}.0\n" for i in range(20)))
    return sorted(directory.iterdir())
