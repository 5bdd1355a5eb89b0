"""Plain Python models, Cog-style: `file.py:Class` with optional `setup()` and `predict(**inputs)`."""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path

from .convert import InputError, name_outputs, require_inputs


class PythonModel:
    def __init__(self, instance, inputs: dict, outputs: dict):
        self.instance = instance
        self.input_names = list(inputs)
        self.output_names = list(outputs)

    def predict(self, inputs: dict) -> dict:
        if self.input_names:
            require_inputs(inputs, self.input_names)
        elif not isinstance(inputs, dict):
            raise InputError("'inputs' must be an object mapping input names to values.")
        return name_outputs(self.instance.predict(**inputs), self.output_names)


def load(package_dir: Path, artifact, entrypoint, inputs, outputs, device: str, threads=None) -> PythonModel:
    cls = _import_class(Path(package_dir), entrypoint)
    instance = cls()
    if callable(getattr(instance, "setup", None)):
        instance.setup()
    return PythonModel(instance, inputs, outputs)


def _import_class(package_dir: Path, entrypoint: str | None):
    if not entrypoint or ":" not in entrypoint:
        raise ValueError(f"Entrypoint {entrypoint!r} must look like 'predict.py:Model'.")
    filename, class_name = entrypoint.rsplit(":", 1)
    path = package_dir / filename
    if not path.is_file():
        raise FileNotFoundError(f"Entrypoint file {filename!r} not found in {package_dir}.")
    if str(package_dir) not in sys.path:
        sys.path.insert(0, str(package_dir))
    module = _import_file(path)
    if not hasattr(module, class_name):
        raise AttributeError(f"{filename} defines no class {class_name!r} (entrypoint).")
    return getattr(module, class_name)


def _import_file(path: Path):
    name = "aid_model_" + path.stem.replace("-", "_").replace(".", "_")
    spec = importlib.util.spec_from_file_location(name, path)
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module
    spec.loader.exec_module(module)
    return module
