"""Check the built example packages: each manifest parses, reference.csv has the input's columns,
and each artifact, loaded as its flavor would load it, gives examples.json's expected outputs
with the dtypes and shapes its manifest declares.

Usage: .venv/bin/python examples/verify.py   (after examples/build.py)
"""

from __future__ import annotations

import importlib.util
import json
import math
import sys
from pathlib import Path

import numpy as np

EXAMPLES = Path(__file__).resolve().parent
sys.path.insert(0, str(EXAMPLES.parent))

from registry.manifest import Manifest, parse_manifest, read_manifest  # noqa: E402


def run_onnx(package_dir: Path, manifest: Manifest, inputs: dict) -> dict:
    import onnxruntime as ort

    path = str(package_dir / manifest.artifact)
    session = ort.InferenceSession(path, providers=["CPUExecutionProvider"])
    names = [output.name for output in session.get_outputs()]
    return dict(zip(names, session.run(None, inputs), strict=True))


def run_torch(package_dir: Path, manifest: Manifest, inputs: dict) -> dict:
    import torch

    module = torch.jit.load(str(package_dir / manifest.artifact), map_location="cpu")
    with torch.no_grad():
        result = module(*(torch.from_numpy(value) for value in inputs.values()))
    return {name: t.numpy() for name, t in zip(manifest.outputs, result, strict=True)}


def run_python(package_dir: Path, manifest: Manifest, inputs: dict) -> dict:
    file, class_name = manifest.entrypoint.split(":")
    spec = importlib.util.spec_from_file_location(f"{manifest.name}_entry", package_dir / file)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    model = getattr(module, class_name)()
    model.setup()
    return {name: np.asarray(value) for name, value in model.predict(**inputs).items()}


RUN = {"onnx": run_onnx, "torch": run_torch, "python": run_python}


def check_outputs(manifest: Manifest, outputs: dict, expected: dict) -> list[str]:
    problems = []
    for name, spec in manifest.outputs.items():
        value = outputs.get(name)
        shape = list(getattr(value, "shape", []))
        if value is None or value.dtype != np.dtype(spec["dtype"]) or len(shape) != len(spec["shape"]):
            problems.append(f"output {name}: got {getattr(value, 'dtype', None)} {shape}, want {spec}")
        elif any(want not in (-1, got) for want, got in zip(spec["shape"], shape, strict=True)):
            problems.append(f"output {name}: shape {shape} does not fit {spec['shape']}")
    for name, want in expected.items():
        if name in outputs and np.asarray(outputs[name]).tolist() != want:
            problems.append(f"output {name}: got {outputs[name].tolist()}, expected {want}")
    return problems


def check_reference(package_dir: Path, manifest: Manifest) -> list[str]:
    ((name, spec),) = manifest.inputs.items()
    width = math.prod(spec["shape"][1:])
    header = (package_dir / manifest.reference_data).read_text().splitlines()[0].split(",")
    want = [f"{name}.{i}" for i in range(width)]
    return [] if header == want else [f"reference.csv columns {header[:3]}... != {want[:3]}..."]


def verify(package_dir: Path) -> list[str]:
    manifest = parse_manifest(read_manifest(package_dir))
    problems = check_reference(package_dir, manifest)
    examples = json.loads((package_dir / manifest.examples).read_text(encoding="utf-8"))
    for i, example in enumerate(examples):
        inputs = {
            name: np.asarray(value, dtype=manifest.inputs[name]["dtype"])
            for name, value in example["inputs"].items()
        }
        outputs = RUN[manifest.framework](package_dir, manifest, inputs)
        problems += [f"examples[{i}] {p}" for p in check_outputs(manifest, outputs, example["outputs"])]
    return problems


def main() -> int:
    failed = False
    for package_dir in sorted(p.parent for p in EXAMPLES.glob("*/aid.yaml")):
        problems = verify(package_dir)
        failed |= bool(problems)
        print(f"{package_dir.name}: {'; '.join(problems) or 'ok'}")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
