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
MAX_REQUIREMENTS_BYTES = 64 * 1024  # requirements.txt
MAX_EXAMPLES = 100  # each is a call to the model when a version is deployed
MAX_EXAMPLES_BYTES = 8 * 1024 * 1024  # examples.json, kept with the version in the database
MAX_HEADER_BYTES = 64 * 1024  # the header line of reference_data; the rest of it is not read
MAX_COLUMN_PROBLEMS = 20  # columns of reference_data named in an answer; then a count


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
    _check_plain_files(root, problems)
    manifest = _with_requirements_file(root, manifest, problems)
    _check_files(root, manifest, problems)
    inputs, outputs = _schema(root, manifest, problems)
    examples = _examples(root, manifest, inputs, problems)
    _check_reference(root, manifest, inputs, problems)
    card = _card(root, problems)
    if problems:
        raise PackageInvalid(problems)
    return Package(root, manifest, inputs, outputs, card, examples)


def _check_plain_files(root: Path, problems: list[Problem]) -> None:
    """A package holds plain files and folders: no links (which could point anywhere on the machine
    that packs it), no FIFOs, sockets or devices."""
    for path in sorted(root.rglob("*")):
        rel = path.relative_to(root)
        if SKIPPED & set(rel.parts):
            continue
        if path.is_symlink():
            problems.append(Problem(str(rel), "is a symbolic link; copy the file in instead"))
        elif not (path.is_file() or path.is_dir()):
            problems.append(Problem(str(rel), "is not a plain file (a FIFO, socket or device); remove it"))


def _with_requirements_file(root: Path, m: Manifest, problems: list[Problem]) -> Manifest:
    """`requirements.txt` stands in for the manifest's `requirements` list when that is absent."""
    path = root / "requirements.txt"
    if not path.is_file():
        return m
    if m.requirements:
        problems.append(Problem("requirements", "given in aid.yaml and in requirements.txt; keep one"))
        return m
    text = _small_text(path, MAX_REQUIREMENTS_BYTES, "requirements.txt", problems)
    lines = [line.split("#")[0].strip() for line in (text or "").splitlines()]
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
    text = _small_text(root / m.examples, MAX_EXAMPLES_BYTES, "examples", problems)
    if text is None:
        return None
    try:
        examples = json.loads(text)
    except (ValueError, RecursionError) as e:
        problems.append(Problem("examples", f"{m.examples} is not valid JSON: {e}"))
        return None
    if not isinstance(examples, list) or not all(isinstance(e, dict) for e in examples):
        problems.append(Problem("examples", 'must be a list of {"inputs": {...}, "outputs": {...}}'))
        return None
    if len(examples) > MAX_EXAMPLES:
        problems.append(Problem("examples", f"has {len(examples):,} examples; keep at most {MAX_EXAMPLES}"))
        return None
    for i, example in enumerate(examples):
        for message in check_inputs(example.get("inputs"), inputs):
            problems.append(Problem(f"examples[{i}]", message))
    return examples


def _small_text(path: Path, limit: int, field: str, problems: list[Problem]) -> str | None:
    """The text of a file that must be small, read no further than `limit`; None with a problem."""
    with path.open("rb") as f:
        raw = f.read(limit + 1)
    if len(raw) > limit:
        problems.append(Problem(field, f"{path.name} is larger than {limit:,} bytes; shorten it"))
        return None
    try:
        return raw.decode("utf-8")
    except UnicodeDecodeError as e:
        problems.append(Problem(field, f"{path.name} is not UTF-8 text: {e}"))
        return None


def _check_reference(root: Path, m: Manifest, inputs: dict, problems: list[Problem]) -> None:
    path = root / (m.reference_data or "")
    if not m.reference_data or not path.is_file():
        return
    if path.suffix != ".csv":
        problems.append(Problem("reference_data", f"{m.reference_data!r} must be a .csv file"))
        return
    header = csv_header(path, m.reference_data, problems)
    found = [(column, message) for column in header if (message := _column_problem(column, inputs))]
    for column, message in found[:MAX_COLUMN_PROBLEMS]:
        problems.append(Problem(f"reference_data.{column}", message))
    if len(found) > MAX_COLUMN_PROBLEMS:
        problems.append(Problem("reference_data", f"and {len(found) - MAX_COLUMN_PROBLEMS:,} more columns"))


def csv_header(path: Path, name: str, problems: list[Problem]) -> list[str]:
    """The column names of a CSV file, read from its first line only: the data may be any size."""
    with path.open("rb") as f:
        line = f.readline(MAX_HEADER_BYTES + 1)
    if len(line) > MAX_HEADER_BYTES:
        problems.append(
            Problem("reference_data", f"{name}: the header line is longer than {MAX_HEADER_BYTES:,} bytes")
        )
        return []
    try:
        return next(csv.reader([line.decode("utf-8-sig")]), [])
    except (UnicodeDecodeError, csv.Error) as e:
        problems.append(Problem("reference_data", f"{name}: the header line cannot be read as CSV: {e}"))
        return []


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
