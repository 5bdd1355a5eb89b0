"""iris-onnx: standardise + logistic regression on the iris flowers, exported to ONNX."""

from __future__ import annotations

from pathlib import Path

from skl2onnx import convert_sklearn
from skl2onnx.common.data_types import FloatTensorType, Int64TensorType
from sklearn.datasets import load_iris
from sklearn.linear_model import LogisticRegression
from sklearn.pipeline import Pipeline, make_pipeline
from sklearn.preprocessing import StandardScaler

from builders.common import confident_rows, metrics, split, write_examples, write_reference

OPSET = {"": 17, "ai.onnx.ml": 3}  # old enough for every onnxruntime >= 1.20


def build(package_dir: Path) -> dict:
    x, y = load_iris(return_X_y=True)
    x_train, x_test, y_train, y_test = split(x, y)
    model = make_pipeline(StandardScaler(), LogisticRegression(max_iter=1000)).fit(x_train, y_train)
    (package_dir / "model.onnx").write_bytes(to_onnx(model))
    write_reference(package_dir / "reference.csv", "features", x_train)
    rows = confident_rows(y_test, model.predict_proba(x_test), classes=[0, 1, 2])
    write_examples(package_dir / "examples.json", "features", x_test[rows], y_test[rows])
    return metrics(y_test, model.predict(x_test))


def to_onnx(model: Pipeline) -> bytes:
    """features float32 [-1, 4] -> label int64 [-1], probabilities float32 [-1, 3] (no ZipMap)."""
    onx = convert_sklearn(
        model,
        name="iris_onnx",  # the default is a random uuid
        initial_types=[("features", FloatTensorType([None, 4]))],
        final_types=[("label", Int64TensorType([None])), ("probabilities", FloatTensorType([None, 3]))],
        options={id(model[-1]): {"zipmap": False}},
        target_opset=OPSET,
    )
    opsets = sorted(onx.opset_import, key=lambda opset: opset.domain)  # the order is not stable
    del onx.opset_import[:]
    onx.opset_import.extend(opsets)
    return onx.SerializeToString()
