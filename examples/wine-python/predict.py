"""Wine cultivar from 13 chemical measurements: standardise, then multinomial logistic regression.

Cog-style model for aidhub's python flavor: setup() once, predict(features=...) per call. The
weights are fitted by examples/builders/wine_python.py and stored in weights.json beside this file.
"""

import json
from pathlib import Path

import numpy as np

WEIGHTS = Path(__file__).with_name("weights.json")


class Model:
    def setup(self):
        weights = json.loads(WEIGHTS.read_text(encoding="utf-8"))
        self.mean = np.array(weights["mean"])
        self.scale = np.array(weights["scale"])
        self.coef = np.array(weights["coef"])
        self.intercept = np.array(weights["intercept"])

    def predict(self, features):
        """features: [n, 13] -> {"label": [n] class indices, "probabilities": [n, 3]}."""
        x = np.asarray(features, dtype=np.float64).reshape(-1, self.mean.size)
        logits = ((x - self.mean) / self.scale) @ self.coef.T + self.intercept
        exp = np.exp(logits - logits.max(axis=1, keepdims=True))
        probabilities = exp / exp.sum(axis=1, keepdims=True)
        return {"label": probabilities.argmax(axis=1).tolist(), "probabilities": probabilities.tolist()}
