"""The model package's `aid.yaml`: parsing and validation that reports every problem at once."""

from __future__ import annotations

import math
import re
from dataclasses import dataclass, field
from fractions import Fraction
from pathlib import Path

import yaml

MANIFEST = "aid.yaml"
NAME_RE = re.compile(r"^([a-z0-9][a-z0-9-]{0,62}/)?[a-z0-9][a-z0-9-]{0,62}$")
SEMVER_RE = re.compile(r"^\d+\.\d+\.\d+(-[0-9A-Za-z.-]+)?(\+[0-9A-Za-z.-]+)?$")
TAG_RE = re.compile(r"^[a-z0-9][a-z0-9._-]{0,39}$")
REQUIREMENT_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._\[\],-]*\s*([<>=!~]=?[^\s;'\"`$\\]*\s*,?\s*)*$")
ENTRYPOINT_RE = re.compile(r"^[A-Za-z0-9_./-]+\.py:[A-Za-z_][A-Za-z0-9_]*$")
PYTHON_RE = re.compile(r"^3\.\d{1,2}$")
MEMORY_RE = re.compile(r"(\d+(?:\.\d+)?)(Ki|Mi|Gi|Ti|K|M|G|T)?")
MEMORY_UNITS = {"": 1, "K": 1000, "M": 1000**2, "G": 1000**3, "T": 1000**4}
MEMORY_UNITS.update({"Ki": 1024, "Mi": 1024**2, "Gi": 1024**3, "Ti": 1024**4})
MIN_MEMORY_BYTES = 6 * 1024**2  # Docker Engine refuses smaller memory limits
MIN_CPUS = 0.01  # engines refuse a CFS quota under 1 ms per 100 ms period
# An image reference with a tag or digest: the grammar of runners/buildcontext.py `_IMAGE`
# (github.com/distribution/reference). Copied, not imported: registry imports nothing above it
# (DESIGN.md section 8); tests/test_packages.py checks that both accept the same references.
_IMG_DOMAIN_PART = r"[A-Za-z0-9](?:[A-Za-z0-9-]*[A-Za-z0-9])?"
_IMG_COMPONENT = r"[a-z0-9]+(?:(?:[._]|__|-+)[a-z0-9]+)*"
IMAGE_RE = re.compile(
    rf"(?:{_IMG_DOMAIN_PART}(?:\.{_IMG_DOMAIN_PART})*(?::[0-9]+)?/)?{_IMG_COMPONENT}(?:/{_IMG_COMPONENT})*"
    r"(?::[A-Za-z0-9_][A-Za-z0-9_.-]{0,127}(?:@sha256:[a-f0-9]{64})?|@sha256:[a-f0-9]{64})"
)
BASE_IMAGE_KEYS = ("cpu", "gpu")
FRAMEWORKS = ("onnx", "torch", "sklearn", "python")
DTYPES = (
    "float16", "float32", "float64", "int8", "int16", "int32", "int64",
    "uint8", "uint16", "uint32", "uint64", "bool", "string",
)  # fmt: skip


@dataclass(frozen=True)
class Problem:
    path: str  # field path, e.g. "inputs.features.dtype"
    message: str  # what is wrong and how to fix it

    def __str__(self) -> str:
        return f"{self.path}: {self.message}"


class PackageInvalid(Exception):
    def __init__(self, problems: list[Problem]):
        super().__init__("; ".join(str(p) for p in problems))
        self.problems = problems


@dataclass(frozen=True)
class Manifest:
    name: str
    version: str
    task: str
    framework: str
    artifact: str | None = None
    entrypoint: str | None = None
    summary: str = ""
    license: str = ""
    tags: tuple[str, ...] = ()
    inputs: dict = field(default_factory=dict)
    outputs: dict = field(default_factory=dict)
    labels: tuple[str, ...] = ()
    requirements: tuple[str, ...] = ()
    python: str = "3.11"
    resources: dict = field(default_factory=lambda: {"cpu": 1, "memory": "1Gi", "gpu": "0"})
    base_image: str | dict | None = None  # an image reference, or {cpu: ref, gpu: ref}
    reference_data: str | None = None
    examples: str | None = None

    def to_dict(self) -> dict:
        out = {k: getattr(self, k) for k in self.__dataclass_fields__}
        return {k: list(v) if isinstance(v, tuple) else v for k, v in out.items()}


def normalise_task(task: str) -> str:
    """'Tabular Classification' -> 'tabular-classification'."""
    return re.sub(r"[^a-z0-9]+", "-", task.strip().lower()).strip("-")


def parse_memory(value) -> int:
    """Bytes of a manifest size: '512Mi' (binary units Ki Mi Gi Ti), '1G' (decimal K M G T) or a
    plain number of bytes, as Kubernetes reads them; ValueError for anything else."""
    match = MEMORY_RE.fullmatch(str(value).strip()) if not isinstance(value, bool) else None
    if match is None:
        raise ValueError(f"{value!r} is not a size such as 512Mi or 2Gi")
    return math.ceil(Fraction(match.group(1)) * MEMORY_UNITS[match.group(2) or ""])


def base_image_overrides(value) -> dict[str, str]:
    """The manifest's `base_image` as {"cpu": ref, "gpu": ref}: one reference stands for both."""
    if not value:
        return {}
    if isinstance(value, str):
        return {key: value for key in BASE_IMAGE_KEYS}
    return {str(k): str(v) for k, v in value.items()}


def read_manifest(package_dir: Path) -> dict:
    path = Path(package_dir) / MANIFEST
    if not path.is_file():
        raise PackageInvalid([Problem(MANIFEST, f"missing in {package_dir}; run 'aid init'.")])
    try:
        data = yaml.safe_load(path.read_text(encoding="utf-8"))
    except (yaml.YAMLError, UnicodeDecodeError) as e:
        raise PackageInvalid([Problem(MANIFEST, f"is not valid YAML: {e}")]) from e
    if not isinstance(data, dict):
        raise PackageInvalid([Problem(MANIFEST, "must be a mapping of fields (name: ..., ...)")])
    return data


def parse_manifest(data: dict) -> Manifest:
    """Check the manifest's fields (not the files); raise PackageInvalid listing every problem."""
    manifest, problems = check_manifest(data)
    if problems:
        raise PackageInvalid(problems)
    return manifest


def check_manifest(data: dict) -> tuple[Manifest, list[Problem]]:
    """The manifest as far as it could be read, and every problem found in its fields."""
    problems: list[Problem] = []
    checks = _FieldChecks(data, problems)
    manifest = Manifest(
        name=checks.pattern("name", NAME_RE, "lower-case letters, digits and '-', e.g. iris-classifier"),
        version=checks.pattern("version", SEMVER_RE, "a semantic version like 1.2.0"),
        task=normalise_task(checks.text("task", required=True)),
        framework=checks.choice("framework", FRAMEWORKS),
        artifact=checks.relpath("artifact"),
        entrypoint=checks.optional_pattern("entrypoint", ENTRYPOINT_RE, "file.py:ClassName"),
        summary=checks.text("summary"),
        license=checks.text("license"),
        tags=checks.tags(),
        inputs=checks.tensors("inputs"),
        outputs=checks.tensors("outputs"),
        labels=checks.string_list("labels"),
        requirements=checks.requirements(),
        python=checks.optional_pattern("python", PYTHON_RE, "a Python minor version like '3.11'") or "3.11",
        resources=checks.resources(),
        base_image=checks.base_image(),
        reference_data=checks.relpath("reference_data"),
        examples=checks.relpath("examples"),
    )
    _check_framework_fields(manifest, data, problems)
    return manifest, problems


def _check_framework_fields(m: Manifest, data: dict, problems: list[Problem]) -> None:
    if m.framework in ("onnx", "torch", "sklearn") and not m.artifact and "artifact" not in data:
        problems.append(Problem("artifact", f"required for framework {m.framework}: the model file"))
    if m.framework == "python" and not m.entrypoint and "entrypoint" not in data:
        problems.append(Problem("entrypoint", "required for framework python, e.g. predict.py:Model"))
    if m.framework != "onnx" and not m.inputs and "inputs" not in data:
        problems.append(
            Problem("inputs", f"required for framework {m.framework}: name each input's dtype/shape")
        )


class _FieldChecks:
    """Reads one field at a time, recording a Problem instead of raising."""

    def __init__(self, data: dict, problems: list[Problem]):
        self.data = data
        self.problems = problems
        known = set(Manifest.__dataclass_fields__) | {"requirements"}
        for key in data:
            if key not in known:
                problems.append(Problem(str(key), f"unknown field; known: {', '.join(sorted(known))}"))

    def fail(self, path: str, message: str):
        self.problems.append(Problem(path, message))
        return None

    def text(self, key: str, required: bool = False) -> str:
        value = self.data.get(key)
        if value is None:
            if required:
                self.fail(key, "required")
            return ""
        if not isinstance(value, str | int | float) or isinstance(value, bool):
            return self.fail(key, f"must be text, got {type(value).__name__}") or ""
        return str(value).strip()

    def pattern(self, key: str, regex: re.Pattern, hint: str) -> str:
        value = self.text(key)
        if key not in self.data:
            return self.fail(key, f"required: {hint}") or ""
        if value and not regex.fullmatch(value):
            self.fail(key, f"{value!r} is not valid: use {hint}")
        return value

    def optional_pattern(self, key: str, regex: re.Pattern, hint: str) -> str | None:
        if self.data.get(key) is None:
            return None
        value = self.text(key)
        if value and not regex.fullmatch(value):
            return self.fail(key, f"{value!r} is not valid: use {hint}")
        return value or None

    def choice(self, key: str, choices: tuple[str, ...]) -> str:
        value = self.text(key)
        if value not in choices:
            self.fail(key, f"{value or 'missing'!r} is not supported; use one of {', '.join(choices)}")
        return value

    def relpath(self, key: str) -> str | None:
        value = self.text(key)
        if not value:
            return None
        parts = Path(value).parts
        if value.startswith("/") or ".." in parts or "\\" in value or "\n" in value:
            return self.fail(key, f"{value!r} must be a relative path inside the package")
        return value

    def string_list(self, key: str) -> tuple[str, ...]:
        value = self.data.get(key)
        if value is None:
            return ()
        if not isinstance(value, list) or not all(isinstance(v, str | int) for v in value):
            return self.fail(key, "must be a list of strings, e.g. [a, b]") or ()
        return tuple(str(v) for v in value)

    def tags(self) -> tuple[str, ...]:
        tags = tuple(t.lower() for t in self.string_list("tags"))
        for i, tag in enumerate(tags):
            if not TAG_RE.fullmatch(tag):
                self.fail(f"tags[{i}]", f"{tag!r} is not valid: lower-case letters, digits, . _ -")
        return tags

    def requirements(self) -> tuple[str, ...]:
        reqs = self.string_list("requirements")
        for i, req in enumerate(reqs):
            if not REQUIREMENT_RE.fullmatch(req.strip()):
                self.fail(
                    f"requirements[{i}]",
                    f"{req!r} is not a plain requirement: use 'package' or 'package>=1.2,<2'",
                )
        return tuple(r.strip() for r in reqs)

    def tensors(self, key: str) -> dict:
        value = self.data.get(key)
        if value is None:
            return {}
        if not isinstance(value, dict):
            return self.fail(key, "must map each name to {dtype: ..., shape: [...]}") or {}
        return {str(n): self._tensor(f"{key}.{n}", n, s) for n, s in value.items()}

    def _tensor(self, path: str, name, spec) -> dict:
        if not re.fullmatch(r"[A-Za-z_][A-Za-z0-9_.:-]{0,63}", str(name)):
            self.fail(path, f"{name!r} is not a valid tensor name: letters, digits, _ . : -")
        if not isinstance(spec, dict):
            return self.fail(path, "must be {dtype: float32, shape: [-1, 4]}") or {}
        dtype = spec.get("dtype")
        if dtype not in DTYPES:
            self.fail(f"{path}.dtype", f"{dtype!r} is not supported; use one of {', '.join(DTYPES)}")
        shape = spec.get("shape", [])
        if not isinstance(shape, list) or not all(
            isinstance(d, int) and not isinstance(d, bool) and d >= -1 for d in shape
        ):
            self.fail(f"{path}.shape", f"{shape!r} must be a list of sizes, -1 for any ([] = scalar)")
            shape = []
        return {"dtype": dtype, "shape": shape}

    def resources(self) -> dict:
        value = self.data.get("resources") or {}
        if not isinstance(value, dict):
            return self.fail("resources", "must be {cpu: 1, memory: 1Gi, gpu: 0}") or {}
        gpu = str(value.get("gpu", 0)).strip().lower()
        if not (gpu == "optional" or (gpu.isdigit() and int(gpu) <= 16)):
            self.fail("resources.gpu", f"{gpu!r} must be 0, a GPU count, or 'optional'")
        cpu = value.get("cpu", 1)
        if not isinstance(cpu, int | float) or isinstance(cpu, bool) or not MIN_CPUS <= cpu <= 256:
            self.fail("resources.cpu", f"{cpu!r} must be a number of CPUs from 0.01 to 256, such as 1 or 0.5")
        memory = str(value.get("memory", "1Gi")).strip()
        self._memory(memory)
        return {"cpu": cpu, "memory": memory, "gpu": gpu}

    def _memory(self, memory: str) -> None:
        try:
            size = parse_memory(memory)
        except ValueError:
            self.fail("resources.memory", f"{memory!r} must be a size such as 512Mi or 2Gi")
            return
        if size < MIN_MEMORY_BYTES:
            self.fail(
                "resources.memory",
                f"{memory!r} is {size} bytes, under the smallest limit 6Mi; write a unit, e.g. 512Mi",
            )

    def base_image(self) -> str | dict | None:
        value = self.data.get("base_image")
        if value is None:
            return None
        if isinstance(value, dict):
            return {str(k): self._image(f"base_image.{k}", v, str(k)) for k, v in value.items()}
        return self._image("base_image", value)

    def _image(self, path: str, value, key: str = "cpu") -> str:
        hint = "an image reference with a tag or digest, e.g. python:3.11-slim"
        if key not in BASE_IMAGE_KEYS:
            return self.fail(path, f"unknown key; use {' or '.join(BASE_IMAGE_KEYS)}: {hint}") or ""
        if not isinstance(value, str) or not IMAGE_RE.fullmatch(value):
            return self.fail(path, f"{value!r} is not valid: use {hint}") or ""
        return value
