"""The heavier benchmark model, built on first use: an MLP on image-sized input, exported to ONNX.

The 8x8 digits of scikit-learn, scaled up to 3x32x32 "RGB" images (a 12 KB JSON body per row), feed
an MLP (3,072 -> 512 -> 256 -> 10) trained by scikit-learn; skl2onnx exports it and a Flatten node
in front takes the image as it is. The package (aid.yaml, model.onnx, examples.json) lands in
.cache/peers/heavy-onnx and is rebuilt only when this file is newer.
"""

from __future__ import annotations

import sys
import warnings
from pathlib import Path

import numpy as np

from tests.hubserver import CACHE, REPO

NAME = "heavy-onnx"
FOLDER = CACHE / "peers" / NAME
SIDE = 32
MANIFEST = f"""\
name: {NAME}
version: 1.0.0
task: image-classification
summary: Digits scaled up to 3x32x32 images, an MLP 3072-512-256-10 (ONNX); benchmarks/peers builds it
license: MIT
framework: onnx
artifact: model.onnx
inputs:
  image: {{dtype: float32, shape: [-1, 3, {SIDE}, {SIDE}]}}
outputs:
  label: {{dtype: int64, shape: [-1]}}
  probabilities: {{dtype: float32, shape: [-1, 10]}}
labels: ["0", "1", "2", "3", "4", "5", "6", "7", "8", "9"]
python: "3.11"
resources: {{cpu: 1, memory: 1Gi, gpu: 0}}
examples: examples.json
"""
CARD = """# heavy-onnx

The benchmark model of `benchmarks/peers`: scikit-learn's 8x8 handwritten digits scaled up to
3x32x32 images (values 0..1), classified by an MLP (3072-512-256-10) exported to ONNX. It exists to
give the servers an image-sized input (3,072 floats a row) and a model that costs more than iris.
"""


def images() -> tuple[np.ndarray, np.ndarray]:
    """Digits as float32 [N, 3, 32, 32] (each pixel repeated 4x4, the grey copied to 3 channels)."""
    from sklearn.datasets import load_digits

    digits = load_digits()
    big = digits.images.repeat(SIDE // 8, axis=1).repeat(SIDE // 8, axis=2) / 16.0
    return np.repeat(big[:, None], 3, axis=1).astype(np.float32), digits.target


def to_onnx(model) -> bytes:
    import onnx
    from onnx import TensorProto, helper
    from skl2onnx import convert_sklearn
    from skl2onnx.common.data_types import FloatTensorType, Int64TensorType

    onx = convert_sklearn(
        model,
        name=NAME,
        initial_types=[("flat", FloatTensorType([None, 3 * SIDE * SIDE]))],
        final_types=[("label", Int64TensorType([None])), ("probabilities", FloatTensorType([None, 10]))],
        options={id(model): {"zipmap": False}},
        target_opset={"": 17, "ai.onnx.ml": 3},
    )
    del onx.graph.input[:]
    onx.graph.input.append(helper.make_tensor_value_info("image", TensorProto.FLOAT, [None, 3, SIDE, SIDE]))
    onx.graph.node.insert(0, helper.make_node("Flatten", ["image"], ["flat"], axis=1))
    onnx.checker.check_model(onx)
    return onx.SerializeToString()


def build(folder: Path = FOLDER) -> dict:
    from sklearn.exceptions import ConvergenceWarning
    from sklearn.neural_network import MLPClassifier

    sys.path.insert(0, str(REPO / "examples"))
    from builders.common import confident_rows, metrics, split, write_examples

    x, y = images()
    x_train, x_test, y_train, y_test = split(x, y)
    model = MLPClassifier((512, 256), max_iter=30, random_state=0)
    with warnings.catch_warnings(action="ignore", category=ConvergenceWarning):  # 30 epochs: 0.97+
        model.fit(x_train.reshape(len(x_train), -1), y_train)
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "model.onnx").write_bytes(to_onnx(model))
    flat_test = x_test.reshape(len(x_test), -1)
    rows = confident_rows(y_test, model.predict_proba(flat_test), classes=[0, 3, 8])
    write_examples(folder / "examples.json", "image", x_test[rows], y_test[rows])
    (folder / "README.md").write_text(CARD, encoding="utf-8")
    (folder / "aid.yaml").write_text(MANIFEST, encoding="utf-8")
    return metrics(y_test, model.predict(flat_test))


def package() -> Path:
    """The package folder, built when missing or older than this file."""
    done = FOLDER / "aid.yaml"
    if not done.is_file() or done.stat().st_mtime < Path(__file__).stat().st_mtime:
        build()
    return FOLDER
