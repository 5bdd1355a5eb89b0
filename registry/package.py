"""A model package on disk: validating it whole, packing it reproducibly, unpacking it safely."""

from __future__ import annotations

import csv
import gzip
import io
import json
import math
import tarfile
from dataclasses import dataclass, replace
from pathlib import Path

from registry.manifest import Manifest, PackageInvalid, Problem, check_manifest, read_manifest
from registry.onnx_schema import OnnxUnreadable, read_onnx_schema
from registry.tensors import check_inputs, row_width

SKIPPED = {"__pycache__", ".git", ".ipynb_checkpoints", ".DS_Store"}
MAX_CARD_BYTES = 256 * 1024


@dataclass(frozen=True)
class Package:
    root: Path
    manifest: Manifest
    inputs: dict
    outputs: dict
    card: str
    examples: list | None


def validate_package(root: Path) -> Package:
    """Check the manifest and the files it names; raise PackageInvalid listing every problem."""
    root = Path(root)
    manifest, problems = check_manifest(read_manifest(root))
    manifest = _with_requirements_file(root, manifest, problems)
    _check_files(root, manifest, problems)
    inputs, outputs = _schema(root, manifest, problems)
    examples = _examples(root, manifest, inputs, problems)
    _check_reference(root, manifest, inputs, problems)
    card = _card(root, problems)
    if problems:
        raise PackageInvalid(problems)
    return Package(root, manifest, inputs, outputs, card, examples)


def _with_requirements_file(root: Path, m: Manifest, problems: list[Problem]) -> Manifest:
    """`requirements.txt` stands in for the manifest's `requirements` list when that is absent."""
    path = root / "requirements.txt"
    if not path.is_file():
        return m
    if m.requirements:
        problems.append(Problem("requirements", "given in aid.yaml and in requirements.txt; keep one"))
        return m
    lines = [line.split("#")[0].strip() for line in path.read_text(encoding="utf-8").splitlines()]
    parsed, file_problems = check_manifest({**m.to_dict(), "requirements": [r for r in lines if r]})
    for p in file_problems:
        if p.path.startswith("requirements["):
            problems.append(Problem(p.path.replace("requirements", "requirements.txt"), p.message))
    return replace(m, requirements=parsed.requirements)


def _check_files(root: Path, m: Manifest, problems: list[Problem]) -> None:
    named = {"artifact": m.artifact, "reference_data": m.reference_data, "examples": m.examples}
    if m.entrypoint:
        named["entrypoint"] = m.entrypoint.split(":")[0]
    for field, rel in named.items():
        if rel and not (root / rel).exists():
            problems.append(Problem(field, f"{rel!r} does not exist in the package; add it or fix the path"))


def _schema(root: Path, m: Manifest, problems: list[Problem]) -> tuple[dict, dict]:
    if m.framework != "onnx" or not m.artifact or not (root / m.artifact).is_file():
        return m.inputs, m.outputs
    try:
        inputs, outputs = read_onnx_schema(root / m.artifact)
    except OnnxUnreadable as e:
        problems.append(Problem("artifact", str(e)))
        return m.inputs, m.outputs
    for name in set(m.inputs) - set(inputs):
        problems.append(Problem(f"inputs.{name}", f"not an input of the graph; it has {', '.join(inputs)}"))
    return inputs, outputs


def _examples(root: Path, m: Manifest, inputs: dict, problems: list[Problem]) -> list | None:
    if not m.examples or not (root / m.examples).is_file():
        return None
    try:
        examples = json.loads((root / m.examples).read_text(encoding="utf-8"))
    except (ValueError, UnicodeDecodeError) as e:
        problems.append(Problem("examples", f"{m.examples} is not valid JSON: {e}"))
        return None
    if not isinstance(examples, list) or not all(isinstance(e, dict) for e in examples):
        problems.append(Problem("examples", 'must be a list of {"inputs": {...}, "outputs": {...}}'))
        return None
    for i, example in enumerate(examples):
        for message in check_inputs(example.get("inputs"), inputs):
            problems.append(Problem(f"examples[{i}]", message))
    return examples


def _check_reference(root: Path, m: Manifest, inputs: dict, problems: list[Problem]) -> None:
    path = root / (m.reference_data or "")
    if not m.reference_data or not path.is_file():
        return
    if path.suffix != ".csv":
        problems.append(Problem("reference_data", f"{m.reference_data!r} must be a .csv file"))
        return
    with path.open(newline="", encoding="utf-8") as f:
        header = next(csv.reader(f), [])
    for column in header:
        message = _column_problem(column, inputs)
        if message:
            problems.append(Problem(f"reference_data.{column}", message))


def _column_problem(column: str, inputs: dict) -> str | None:
    name, _, index = column.partition(".")
    if column in inputs:
        name, index = column, ""
    if name not in inputs:
        return f"column {column!r} is not an input; name columns <input> or <input>.<i> ({', '.join(inputs)})"
    width = row_width(inputs[name])
    if index and not index.isdigit():
        return f"column {column!r}: the part after the dot must be an element index"
    if index and width is not None and int(index) >= width:
        return f"column {column!r}: index {index} is out of range; {name} has {width} values per row"
    return None


def _card(root: Path, problems: list[Problem]) -> str:
    path = root / "README.md"
    if not path.is_file():
        problems.append(Problem("README.md", "missing: add a model card saying what the model does"))
        return ""
    if path.stat().st_size > MAX_CARD_BYTES:
        problems.append(Problem("README.md", f"larger than {MAX_CARD_BYTES} bytes; shorten it"))
        return ""
    return path.read_text(encoding="utf-8", errors="replace")


def check_example_outputs(example: dict, outputs: dict) -> list[str]:
    """Compare a served result with an example's expected outputs: exact, floats to 1e-5 relative."""
    return [
        f"outputs.{name}: expected {want!r}, got {outputs.get(name)!r}"
        for name, want in (example.get("outputs") or {}).items()
        if not _same(want, outputs.get(name))
    ]


def _same(want, got) -> bool:
    if isinstance(want, list) and isinstance(got, list):
        return len(want) == len(got) and all(_same(w, g) for w, g in zip(want, got, strict=True))
    if isinstance(want, float) and isinstance(got, int | float) and not isinstance(got, bool):
        return math.isclose(want, got, rel_tol=1e-5, abs_tol=1e-6)
    return want == got and type(want) is type(got)


# --- packing and unpacking -------------------------------------------------------------


def package_files(root: Path) -> list[Path]:
    """Files to pack, sorted; symlinks and special files are refused."""
    files = []
    for path in sorted(Path(root).rglob("*")):
        rel = path.relative_to(root)
        if SKIPPED & set(rel.parts) or path.suffix == ".pyc":
            continue
        if path.is_symlink():
            raise PackageInvalid([Problem(str(rel), "is a symbolic link; copy the file in instead")])
        if path.is_file():
            files.append(path)
    return files


def pack(root: Path) -> bytes:
    """A reproducible .tar.gz of the package: same files, same bytes, same digest."""
    buffer = io.BytesIO()
    with gzip.GzipFile(fileobj=buffer, mode="wb", mtime=0) as gz:
        with tarfile.open(fileobj=gz, mode="w", format=tarfile.PAX_FORMAT) as tar:
            for path in package_files(root):
                info = tarfile.TarInfo(path.relative_to(root).as_posix())
                info.size, info.mode = path.stat().st_size, 0o644
                with path.open("rb") as f:
                    tar.addfile(info, f)
    return buffer.getvalue()
