"""wine-python: standardise + logistic regression on the wine data, served by numpy-only predict.py."""

from __future__ import annotations

import importlib.util
import json
from pathlib import Path

import numpy as np
from sklearn.datasets import load_wine
from sklearn.linear_model import LogisticRegression
from sklearn.pipeline import Pipeline, make_pipeline
from sklearn.preprocessing import StandardScaler

from builders.common import confident_rows, metrics, split, write_examples, write_reference


def build(package_dir: Path) -> dict:
    x, y = load_wine(return_X_y=True)
    x_train, x_test, y_train, y_test = split(x, y)
    model = make_pipeline(StandardScaler(), LogisticRegression(max_iter=1000)).fit(x_train, y_train)
    (package_dir / "weights.json").write_text(json.dumps(weights(model)) + "\n", encoding="utf-8")
    proba = np.array(package_model(package_dir).predict(features=x_test)["probabilities"])
    if not np.allclose(proba, model.predict_proba(x_test)):
        raise RuntimeError("wine-python/predict.py disagrees with the fitted sklearn model")
    write_reference(package_dir / "reference.csv", "features", x_train)
    rows = confident_rows(y_test, proba, classes=[0, 1, 2])
    write_examples(package_dir / "examples.json", "features", x_test[rows], y_test[rows])
    return metrics(y_test, proba.argmax(axis=1))


def weights(model: Pipeline) -> dict:
    scaler, classifier = model[0], model[-1]
    return {
        "mean": scaler.mean_.tolist(),
        "scale": scaler.scale_.tolist(),
        "coef": classifier.coef_.tolist(),
        "intercept": classifier.intercept_.tolist(),
    }


def package_model(package_dir: Path):
    """The package's own predict.py Model, set up from the weights just written."""
    spec = importlib.util.spec_from_file_location("wine_predict", package_dir / "predict.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    model = module.Model()
    model.setup()
    return model
