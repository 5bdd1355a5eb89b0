"""The models benchmarks/peers serves, and each server's request body for one example row."""

from __future__ import annotations

import json
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

from benchmarks.peers import heavy
from benchmarks.peers.rawload import Raw, v2_binary
from tests.hubserver import REPO


@dataclass(frozen=True)
class Model:
    name: str  # as published on the hub and on MLServer
    folder: Path  # the aid package
    artifact: str  # the model file in it
    runtime: str  # MLServer: the class in mlserver_runtime.py
    plain: str  # the class in plain_service.py
    input: str  # its one input
    inputs: dict  # one example row: {input: nested list}

    @property
    def native(self) -> dict:
        """The hub's route and the generated BentoML service: POST .../predict."""
        return {"inputs": self.inputs}

    @property
    def v2(self) -> dict:
        """The Open Inference Protocol (the hub's /v2 and MLServer): flat data with its shape."""
        import numpy as np

        array = np.asarray(self.inputs[self.input], dtype=np.float32)
        tensor = {"name": self.input, "shape": list(array.shape), "datatype": "FP32"}
        return {"inputs": [{**tensor, "data": array.reshape(-1).tolist()}]}

    @property
    def v2_binary(self) -> Raw:
        """The Open Inference Protocol with the binary tensor extension (the Triton client's default)."""
        import numpy as np

        return v2_binary(self.input, np.asarray(self.inputs[self.input], dtype=np.float32))

    @property
    def by_hand(self) -> dict:
        """The hand-written BentoML service: the input as the API method's argument."""
        return self.inputs


def _first_example(folder: Path) -> dict:
    return json.loads((folder / "examples.json").read_text())[0]["inputs"]


def _model(name: str, folder: Path, artifact: str, runtime: str, plain: str) -> Model:
    inputs = _first_example(folder)
    return Model(name, folder, artifact, runtime, plain, next(iter(inputs)), inputs)


def _example_package(name: str) -> Path:
    """examples/NAME, its generated files built first when missing (examples/build.py skips fresh ones)."""
    subprocess.run([sys.executable, str(REPO / "examples" / "build.py"), name], check=True)
    return REPO / "examples" / name


def iris() -> Model:
    return _model("iris-onnx", _example_package("iris-onnx"), "model.onnx", "OnnxRuntime", "IrisOnnx")


def heavier() -> Model:
    return _model(heavy.NAME, heavy.package(), "model.onnx", "OnnxRuntime", "HeavyOnnx")


def digits() -> Model:
    folder = _example_package("digits-torch")
    return _model("digits-torch", folder, "model.pt", "TorchScriptRuntime", "DigitsTorch")


MODELS = {"iris-onnx": iris, heavy.NAME: heavier, "digits-torch": digits}


def chosen(names: str) -> list[Model]:
    """The models named (comma-separated, AIDHUB_PEERS_MODELS), all by default, built as needed."""
    wanted = [n.strip() for n in names.split(",") if n.strip()] or list(MODELS)
    unknown = [n for n in wanted if n not in MODELS]
    if unknown:
        raise SystemExit(f"No peers model named {', '.join(unknown)}; choose from {', '.join(MODELS)}.")
    return [MODELS[n]() for n in wanted]
