"""scikit-learn estimators saved with joblib (or skops for `.skops` files)."""

from __future__ import annotations

from pathlib import Path

from .convert import InputError, artifact_path, require_inputs, to_array, to_json

DEFAULT_OUTPUTS = ["label", "probabilities"]


class SklearnModel:
    def __init__(self, estimator, inputs: dict, outputs: dict):
        self.estimator = estimator
        self.inputs = inputs
        names = list(outputs) or DEFAULT_OUTPUTS
        self.label_name = names[0]
        self.proba_name = names[1] if len(names) > 1 else None

    def predict(self, inputs: dict) -> dict:
        require_inputs(inputs, list(self.inputs))
        features = self._features(inputs)
        try:
            result = {self.label_name: to_json(self.estimator.predict(features))}
            if self.proba_name and hasattr(self.estimator, "predict_proba"):
                result[self.proba_name] = to_json(self.estimator.predict_proba(features))
        except ValueError as e:
            raise InputError(f"The estimator rejected the inputs: {e}") from e
        return result

    def _features(self, inputs: dict):
        arrays = [self._array(n, inputs[n]) for n in self.inputs]
        if len(arrays) == 1:
            return arrays[0]
        import numpy as np

        return np.column_stack(arrays)

    def _array(self, name: str, value):
        spec = self.inputs[name]
        return to_array(name, value, spec.get("dtype", "float64"), spec.get("shape"))


def load(package_dir: Path, artifact, entrypoint, inputs, outputs, device: str, threads=None) -> SklearnModel:
    path = artifact_path(package_dir, artifact, "sklearn")
    return SklearnModel(_load_estimator(path), inputs, outputs)


def _load_estimator(path: Path):
    if path.suffix == ".skops":
        try:
            import skops.io as sio
        except ImportError as e:
            raise ImportError(f"{path.name} is a skops file: add 'skops' to requirements.") from e
        return sio.load(path, trusted=sio.get_untrusted_types(file=path))
    import joblib

    return joblib.load(path)
