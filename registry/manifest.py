"""The model package's `aid.yaml`: parsing and validation that reports every problem at once."""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from pathlib import Path

import yaml

from registry.batching import DEFAULT_BATCHING, check_batch_inputs, check_batching
from registry.errors import RegistryError
from registry.lineage import check_lineage
from vocab.alerts import RULE_KEYS, ConditionInvalid, parse_rule
from vocab.images import IMAGE_HINT, MANIFEST_BASE_IMAGE_KEYS, is_image
from vocab.names import FRAMEWORKS, MODEL_NAME_RE, PYTHON_VERSION_RE, SEMVER_RE, TAG_RE, normalise_task
from vocab.requirements import REQUIREMENT_HINT, is_requirement
from vocab.sizes import parse_size

MANIFEST = "aid.yaml"
MAX_MANIFEST_BYTES = 64 * 1024  # checked before YAML parses a byte of it
MAX_MANIFEST_VALUES = 10_000  # scalars, lists and mappings, with what aliases repeat counted each time
NAME_HINT = "lower-case letters, digits and '-', e.g. iris-classifier"
ENTRYPOINT_RE = re.compile(r"^[A-Za-z0-9_./-]+\.py:[A-Za-z_][A-Za-z0-9_]*$")
TENSOR_NAME_RE = re.compile(r"[A-Za-z_][A-Za-z0-9_.:-]{0,63}")
MIN_MEMORY_BYTES = 6 * 1024**2  # Docker Engine refuses smaller memory limits
MIN_CPUS = 0.01  # engines refuse a CFS quota under 1 ms per 100 ms period
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


class PackageInvalid(RegistryError):
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
    alerts: tuple[dict, ...] | None = None  # rules of the model, normalised; None: not declared
    batching: dict = field(default_factory=lambda: dict(DEFAULT_BATCHING))
    trained_on: tuple[str, ...] = ()  # dataset snapshots, "sha256:<hex>" (registry/lineage.py)
    parent: str | None = None  # the version of this model it was retrained from

    def to_dict(self) -> dict:
        out = {k: getattr(self, k) for k in self.__dataclass_fields__}
        return {k: list(v) if isinstance(v, tuple) else v for k, v in out.items()}


def base_image_overrides(value) -> dict[str, str]:
    """The manifest's `base_image` as {"cpu": ref, "gpu": ref}: one reference stands for both."""
    if not value:
        return {}
    if isinstance(value, str):
        return {key: value for key in MANIFEST_BASE_IMAGE_KEYS}
    return {str(k): str(v) for k, v in value.items()}


def read_manifest(package_dir: Path) -> dict:
    path = Path(package_dir) / MANIFEST
    if not path.is_file():
        raise PackageInvalid([Problem(MANIFEST, f"missing in {package_dir}; run 'aid init'.")])
    with path.open("rb") as f:
        raw = f.read(MAX_MANIFEST_BYTES + 1)
    if len(raw) > MAX_MANIFEST_BYTES:
        _refuse(f"is larger than {MAX_MANIFEST_BYTES:,} bytes; keep it to its fields, data goes in files")
    try:
        data = yaml.load(raw.decode("utf-8"), Loader=_ManifestLoader)
    except (yaml.YAMLError, UnicodeDecodeError, ValueError, RecursionError) as e:
        raise PackageInvalid([Problem(MANIFEST, f"is not valid YAML: {_short(e)}")]) from e
    if not isinstance(data, dict):
        raise PackageInvalid([Problem(MANIFEST, "must be a mapping of fields (name: ..., ...)")])
    if _more_values_than(data, MAX_MANIFEST_VALUES):
        expanded = "once its anchors (&) and aliases (*) are expanded"
        _refuse(f"holds more than {MAX_MANIFEST_VALUES:,} values {expanded}; write the values out")
    return data


def _refuse(message: str):
    raise PackageInvalid([Problem(MANIFEST, message)])


class _ManifestLoader(yaml.SafeLoader):
    """yaml.safe_load's loader without merge keys (`<<: *x`), whose copies can grow exponentially
    before anything could count them."""

    def flatten_mapping(self, node):
        for key, _ in node.value:
            if key.tag == "tag:yaml.org,2002:merge":
                raise yaml.constructor.ConstructorError(
                    None, None, "merge keys (<<) are not supported in aid.yaml", key.start_mark
                )
        super().flatten_mapping(node)


def _more_values_than(data, limit: int) -> bool:
    """Whether `data` holds more than `limit` values, counting a value each time an alias repeats it
    (a YAML bomb); stops counting at the limit, so cycles and bombs cost no more than that."""
    stack, seen = [data], 0
    while stack:
        item = stack.pop()
        seen += 1
        if seen > limit:
            return True
        if isinstance(item, dict):
            stack.extend(item)
            stack.extend(item.values())
        elif isinstance(item, list):
            stack.extend(item)
    return False


def _short(error: Exception, limit: int = 300) -> str:
    text = str(error)
    return text if len(text) <= limit else text[:limit] + "..."


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
        name=checks.pattern("name", MODEL_NAME_RE, NAME_HINT),
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
        python=checks.optional_pattern("python", PYTHON_VERSION_RE, "a Python minor version like '3.11'")
        or "3.11",
        resources=checks.resources(),
        base_image=checks.base_image(),
        reference_data=checks.relpath("reference_data"),
        examples=checks.relpath("examples"),
        alerts=checks.alerts(),
        batching=checks.batching(),
        **check_lineage(data, checks.fail),
    )
    _check_framework_fields(manifest, data, problems)
    problems += [Problem(*p) for p in check_batch_inputs(manifest.batching, manifest.inputs)]
    return manifest, problems


def _check_framework_fields(m: Manifest, data: dict, problems: list[Problem]) -> None:
    if m.framework in ("onnx", "torch", "sklearn") and not m.artifact and "artifact" not in data:
        problems.append(Problem("artifact", f"required for framework {m.framework}: the model file"))
    if m.framework == "python" and not m.entrypoint and "entrypoint" not in data:
        problems.append(Problem("entrypoint", "required for framework python, e.g. predict.py:Model"))
    if m.framework in FRAMEWORKS and m.framework != "onnx" and not m.inputs and "inputs" not in data:
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
            if not is_requirement(req):
                self.fail(f"requirements[{i}]", f"{req!r} is not a plain requirement: use {REQUIREMENT_HINT}")
        return tuple(r.strip() for r in reqs)

    def tensors(self, key: str) -> dict:
        value = self.data.get(key)
        if value is None:
            return {}
        if not isinstance(value, dict):
            return self.fail(key, "must map each name to {dtype: ..., shape: [...]}") or {}
        return {str(n): self._tensor(f"{key}.{n}", n, s) for n, s in value.items()}

    def _tensor(self, path: str, name, spec) -> dict:
        if not TENSOR_NAME_RE.fullmatch(str(name)):
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
            size = parse_size(memory)
        except ValueError:
            self.fail("resources.memory", f"{memory!r} must be a size such as 512Mi or 2Gi")
            return
        if size < MIN_MEMORY_BYTES:
            self.fail(
                "resources.memory",
                f"{memory!r} is {size} bytes, under the smallest limit 6Mi; write a unit, e.g. 512Mi",
            )

    def alerts(self) -> tuple[dict, ...] | None:
        """`alerts:`, a list of {when: CONDITION, for: 10m, window: 1h, webhook: URL, action: rollback}
        (vocab/alerts.py)."""
        value = self.data.get("alerts")
        if value is None:
            return None
        if not isinstance(value, list):
            return self.fail("alerts", "must be a list of rules, e.g. [{when: 'accuracy_low < 0.8'}]")
        return tuple(rule for i, entry in enumerate(value) if (rule := self._alert(f"alerts[{i}]", entry)))

    def _alert(self, path: str, entry) -> dict | None:
        if not isinstance(entry, dict):
            return self.fail(path, "must be a rule such as {when: 'error_rate > 0.05', for: 10m}")
        for key in entry:
            if key == "secret":
                self.fail(f"{path}.secret", "keep secrets out of packages: 'aid alert add --secret' or "
                          "AIDHUB_WEBHOOK_SECRET on the hub sign webhooks")  # fmt: skip
            elif key not in RULE_KEYS:
                self.fail(f"{path}.{key}", f"unknown key; use {', '.join(RULE_KEYS)}")
        try:
            return parse_rule(*(entry.get(key) for key in RULE_KEYS)).to_dict()  # in parse_rule's order
        except ConditionInvalid as e:
            return self.fail(f"{path}.{e.field}", e.message)

    def batching(self) -> dict:
        return check_batching(self.data.get("batching"), self.fail)

    def base_image(self) -> str | dict | None:
        value = self.data.get("base_image")
        if value is None:
            return None
        if isinstance(value, dict):
            return {str(k): self._image(f"base_image.{k}", v, str(k)) for k, v in value.items()}
        return self._image("base_image", value)

    def _image(self, path: str, value, key: str = "cpu") -> str:
        if key not in MANIFEST_BASE_IMAGE_KEYS:
            keys = " or ".join(MANIFEST_BASE_IMAGE_KEYS)
            return self.fail(path, f"unknown key; use {keys}: {IMAGE_HINT}") or ""
        if not is_image(value):
            return self.fail(path, f"{value!r} is not valid: use {IMAGE_HINT}") or ""
        return value
