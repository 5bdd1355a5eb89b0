"""The BentoML service a user writes from BentoML 1.4's docs ("Create online API Services"): one class
per model, `@bentoml.service` with its defaults, a sync `@bentoml.api` taking the input as an
`np.ndarray`. Nothing tuned, nothing of aidhub. benchmarks/peers serves each class with
`bentoml serve plain_service:CLASS --port PORT`, the model file named by MODEL_PATH.

Request: POST /predict {"features": [[5.1, 3.8, 1.6, 0.2]]} (iris; "image" for the image models).
"""

from __future__ import annotations

import os

import bentoml
import numpy as np

MODEL_PATH = os.environ.get("MODEL_PATH", "model.onnx")


class _OnnxModel:
    def __init__(self) -> None:
        import onnxruntime as ort

        self.session = ort.InferenceSession(MODEL_PATH, providers=["CPUExecutionProvider"])

    def run(self, name: str, array: np.ndarray) -> dict:
        label, probabilities = self.session.run(None, {name: array.astype(np.float32)})
        return {"label": label.tolist(), "probabilities": probabilities.tolist()}


@bentoml.service
class IrisOnnx:
    def __init__(self) -> None:
        self.model = _OnnxModel()

    @bentoml.api
    def predict(self, features: np.ndarray) -> dict:
        return self.model.run("features", features)


@bentoml.service
class HeavyOnnx:
    def __init__(self) -> None:
        self.model = _OnnxModel()

    @bentoml.api
    def predict(self, image: np.ndarray) -> dict:
        return self.model.run("image", image)


@bentoml.service
class DigitsTorch:
    def __init__(self) -> None:
        import torch

        self.torch = torch
        self.model = torch.jit.load(MODEL_PATH).eval()

    @bentoml.api
    def predict(self, image: np.ndarray) -> dict:
        with self.torch.no_grad():
            label, probabilities = self.model(self.torch.from_numpy(image.astype(np.float32)))
        return {"label": label.tolist(), "probabilities": probabilities.tolist()}
