"""The container build context: a Dockerfile (a pure function of the spec) and the files it copies.

Layers, ordered for reuse (DESIGN.md section 5):

1. runtime base: `FROM` an image with Python and uv (`base_image_for`);
2. dependencies, keyed by the environment hash: a build stage copies the wheelhouse and a
   requirements file named by the key, and uv installs them offline into a virtualenv at /opt/env;
   the final stage copies only /opt/env, so the wheels never ship in the image;
3. the model files and the generated service, last: a new version with the same requirements
   rebuilds only these layers.

Nothing from a manifest reaches the Dockerfile unchecked: the base image, model name, version,
digest and environment key must match strict patterns, and are also written as JSON strings
wherever the syntax allows; requirements never enter the Dockerfile (they go into the
requirements file, one checked line each). Everything else in the text is constant.
"""

from __future__ import annotations

import json
import os
import re
import shutil
from pathlib import Path

from .base import RunnerError, ServeSpec
from .environment import FRAMEWORK_REQUIREMENTS, GPU_REPLACEMENTS
from .service import SERVICE_CLASS, SERVICE_MODULE, device_for, openapi_document, write_service_dir

APP_DIR = "/app"
MODEL_DIR = f"{APP_DIR}/model"
SERVICE_DIR = f"{APP_DIR}/service"
ENV_DIR = "/opt/env"
WHEELHOUSE_DIR = "/wheelhouse"
PORT = 3000
DEFAULT_UID = 10001
CPU_BASE_IMAGE = "python:{python}-slim"

# GPU runtime bases, keyed by the framework requirement that environment.py pins for GPU
# environments (`framework_pin`): a new pin has no entry until someone checks its CUDA line
# (tests/test_buildcontext.py fails until then). Sources:
# - torch: the "Release Compatibility Matrix" in github.com/pytorch/pytorch RELEASE.md and
#   pytorch.org/get-started/previous-versions (CUDA 12.8 is a stable line of the 2.x wheels);
#   not re-checked for 2.13 on this offline machine, hence overridable.
# - onnxruntime-gpu: onnxruntime.ai/docs/execution-providers/CUDA-ExecutionProvider.html,
#   "Requirements": the PyPI onnxruntime-gpu >= 1.19 wheels are built for CUDA 12.x with cuDNN 9.
#   The pin is a range (>=1.20,<2), so the key is that range, not one release.
# Tags follow hub.docker.com/r/nvidia/cuda (<cuda>-cudnn-runtime-<os>). These images carry no
# Python or uv: they are what a hub's GPU runtime base is built FROM; a hub that serves GPU
# versions names its own bases in AIDHUB_BASE_IMAGES (gpu=..., torch-gpu=...).
GPU_BASE_IMAGES = {
    "torch==2.13.0": "nvidia/cuda:12.8.1-cudnn-runtime-ubuntu24.04",
    "onnxruntime-gpu>=1.20,<2": "nvidia/cuda:12.8.1-cudnn-runtime-ubuntu24.04",
}
DEVICES = ("cpu", "gpu")
# Keys of a hub's base image overrides; a manifest's `base_image` names only "cpu" and "gpu".
BASE_IMAGE_KEYS = (*DEVICES, *(f"{f}-{d}" for f in FRAMEWORK_REQUIREMENTS for d in DEVICES))

# Strict patterns. Full matches only (re.fullmatch), so a trailing newline never passes.
_NAME = r"(?:[a-z0-9][a-z0-9-]{0,62}/)?[a-z0-9][a-z0-9-]{0,62}"  # registry/manifest.py NAME_RE
_SEMVER = r"\d+\.\d+\.\d+(?:-[0-9A-Za-z.-]+)?(?:\+[0-9A-Za-z.-]+)?"
_DIGEST = r"[0-9a-f]{64}"
_ENV_KEY = r"[0-9a-f]{8,64}"
_PYTHON = r"3\.\d{1,2}"
# PEP 508 without URLs or markers: name[extras] op version, op version...
_REQ_NAME = r"[A-Za-z0-9](?:[A-Za-z0-9._-]*[A-Za-z0-9])?"
_REQ_EXTRAS = r"(?:\[[A-Za-z0-9._-]+(?:, ?[A-Za-z0-9._-]+)*\])?"
_REQ_SPEC = r"(?:===|==|!=|~=|<=|>=|<|>) ?[A-Za-z0-9.*+!_-]+"
_REQUIREMENT = rf"{_REQ_NAME}{_REQ_EXTRAS} ?(?:{_REQ_SPEC}(?: ?, ?{_REQ_SPEC})*)?"
# Image references as github.com/distribution/reference grammar.go has them, with a tag or digest.
_IMG_DOMAIN_PART = r"[A-Za-z0-9](?:[A-Za-z0-9-]*[A-Za-z0-9])?"
_IMG_DOMAIN = rf"{_IMG_DOMAIN_PART}(?:\.{_IMG_DOMAIN_PART})*(?::[0-9]+)?"
_IMG_COMPONENT = r"[a-z0-9]+(?:(?:[._]|__|-+)[a-z0-9]+)*"
_IMG_TAG = r"[A-Za-z0-9_][A-Za-z0-9_.-]{0,127}"
_IMG_DIGEST = r"sha256:[a-f0-9]{64}"
_IMAGE = (
    rf"(?:{_IMG_DOMAIN}/)?{_IMG_COMPONENT}(?:/{_IMG_COMPONENT})*"
    rf"(?::{_IMG_TAG}(?:@{_IMG_DIGEST})?|@{_IMG_DIGEST})"
)


class BuildContextError(RunnerError):
    """A value cannot go into a build context; the message names it and the fix."""


def render_dockerfile(
    spec: ServeSpec, base_image: str, env_key: str, requirements: list[str], uid: int = DEFAULT_UID
) -> str:
    """The Dockerfile text for `spec`: runtime base -> dependencies (by `env_key`) -> model files.

    Two specs with the same base image, key and uid give the same text up to `COPY model/`.
    The base image is also a label (`aidhub.base`): an image grown from another base is another image.
    """
    check_requirements(requirements)
    base_image = check_base_image(base_image)
    labels = {
        **_model_labels(spec, env_key),
        "aidhub.base": base_image,
        "aidhub.openapi": openapi_label(spec),
    }
    python = _checked("python version", spec.python, _PYTHON, "a version like 3.11")
    lines = [
        *_dependency_stage(base_image, python, env_key),
        *_runtime_stage(base_image, _check_uid(uid)),
        *_model_layers(labels),
    ]
    return "\n".join(lines) + "\n"


def _dependency_stage(base_image: str, python: str, env_key: str) -> list[str]:
    requirements = f"/opt/aidhub/{requirements_file(env_key)}"
    install = ["uv", "pip", "install", "--python", f"{ENV_DIR}/bin/python", "--no-index"]
    install += ["--find-links", WHEELHOUSE_DIR, "--compile-bytecode", "-r", requirements]
    return [
        "# Generated by aidhub from a version spec. Do not edit.",
        "# 1. Runtime base (Python and uv) and 2. dependencies, keyed by the environment hash.",
        f"FROM {base_image} AS dependencies",
        "ENV UV_PYTHON_DOWNLOADS=never UV_NO_CACHE=1 UV_LINK_MODE=copy",
        f"COPY {requirements_file(env_key)} {requirements}",
        f"COPY wheelhouse/ {WHEELHOUSE_DIR}/",
        f"RUN {_exec(['uv', 'venv', '--python', f'python{python}', ENV_DIR])}",
        f"RUN {_exec(install)}",
        "",
    ]


def _runtime_stage(base_image: str, uid: int) -> list[str]:
    serve = ["bentoml", "serve", f"{SERVICE_MODULE}:{SERVICE_CLASS}", "--host", "0.0.0.0"]
    return [
        "# The image: the runtime base plus the environment; the wheels stay in the stage above.",
        f"FROM {base_image}",
        f"COPY --from=dependencies {ENV_DIR} {ENV_DIR}",
        f"ENV VIRTUAL_ENV={ENV_DIR} PATH={ENV_DIR}/bin:$PATH HOME=/tmp PYTHONUNBUFFERED=1 "
        "BENTOML_DO_NOT_TRACK=true BENTOML_HOME=/tmp/bentoml",
        f"WORKDIR {SERVICE_DIR}",
        f"EXPOSE {PORT}",
        f"USER {uid}:{uid}",
        f"CMD {_exec([*serve, '--port', str(PORT)])}",
        "",
    ]


def openapi_label(spec: ServeSpec) -> str:
    """The service's OpenAPI document as compact JSON, ASCII only (the `aidhub.openapi` label)."""
    return json.dumps(openapi_document(spec), sort_keys=True, separators=(",", ":"))


def _quoted(value: str) -> str:
    """A double-quoted Dockerfile word that the builder reads back as `value` exactly: backslash,
    quote and `$` (variable expansion) are escaped; newlines cannot occur (checked or JSON)."""
    if "\n" in value or "\r" in value:
        raise BuildContextError(f"The label value {value[:60]!r} holds a line break; it cannot be a label.")
    return '"' + value.replace("\\", "\\\\").replace('"', '\\"').replace("$", "\\$") + '"'


def _model_layers(labels: dict[str, str]) -> list[str]:
    pairs = " ".join(f"{key}={_quoted(value)}" for key, value in labels.items())
    return [
        "# 3. This version: model files, then the generated service.",
        f"COPY model/ {MODEL_DIR}/",
        f"COPY service/ {SERVICE_DIR}/",
        f"LABEL {pairs}",
    ]


def _model_labels(spec: ServeSpec, env_key: str) -> dict[str, str]:
    return {
        "aidhub.model": _checked("model name", spec.name, _NAME, "lower-case letters, digits, '-'"),
        "aidhub.version": _checked("version", spec.version, _SEMVER, "a semantic version like 1.2.0"),
        "aidhub.digest": _checked("digest", spec.digest, _DIGEST, "the sha256 hex of the package"),
        "aidhub.env": _checked("environment key", env_key, _ENV_KEY, "the hex from environment_key()"),
    }


def _exec(argv: list[str]) -> str:
    """An exec-form (JSON array) argument list: no shell ever reads it."""
    return json.dumps(argv)


def requirements_file(env_key: str) -> str:
    """The requirements file's name in the build context, e.g. 'requirements-0123abcd.txt'."""
    return f"requirements-{_checked('environment key', env_key, _ENV_KEY, 'the hex key')}.txt"


def render_requirements(requirements: list[str]) -> str:
    """The requirements file: one checked requirement a line, de-duplicated and sorted."""
    reqs = sorted({r.strip() for r in check_requirements(requirements)}, key=str.lower)
    return "".join(f"{r}\n" for r in reqs)


def check_requirements(requirements: list[str]) -> list[str]:
    """`requirements` when every one is a plain `name[extras] op version` line; else refuse."""
    if isinstance(requirements, str):
        raise BuildContextError("Requirements must be a list of strings, not one string.")
    for req in requirements:
        _checked("requirement", str(req).strip(), _REQUIREMENT, "a package name with versions")
    return list(requirements)


def check_base_image(image: str) -> str:
    """`image` when it is a reference with a tag or digest (registry/repo:tag, repo@sha256:...)."""
    return _checked(
        "base image", image, _IMAGE, "an image reference with a tag or digest, e.g. python:3.11-slim"
    )


def _check_uid(uid: int) -> int:
    if isinstance(uid, bool) or not isinstance(uid, int) or not 0 < uid < 2**31:
        raise BuildContextError(f"User id {uid!r} is not valid: use a non-root uid like 10001.")
    return uid


def _checked(what: str, value: str, pattern: str, hint: str) -> str:
    if not isinstance(value, str) or not re.fullmatch(pattern, value):
        raise BuildContextError(f"The {what} {value!r} cannot go into an image: use {hint}.")
    return value


# --- base images -------------------------------------------------------------------------


def base_image_for(framework: str, gpu: str, overrides: dict | None = None, python: str = "3.11") -> str:
    """The runtime base image for a version, `overrides` being the hub's (see choose_base_image)."""
    return choose_base_image(framework, gpu, overrides, None, python)[0]


def choose_base_image(
    framework: str, gpu: str, hub: dict | None = None, manifest: dict | None = None, python: str = "3.11"
) -> tuple[str, str]:
    """(image, why) for a version's runtime base.

    The manifest's `base_image` ("cpu"/"gpu") wins, then the hub's overrides, most specific key
    first ("<framework>-gpu", then "gpu"), then the CUDA table for the framework's pinned GPU
    runtime, then the hub's "cpu" base, then python:<python>-slim. `gpu: optional` takes the CPU
    image, like its requirements.
    """
    device = "gpu" if device_for(gpu) == "cuda" else "cpu"
    manifest, hub = manifest or {}, hub or {}
    if manifest.get(device):
        return check_base_image(manifest[device]), f"manifest base_image for {device}"
    if hub.get(f"{framework}-{device}"):
        return check_base_image(hub[f"{framework}-{device}"]), f"hub override for {framework}-{device}"
    if hub.get(device):
        return check_base_image(hub[device]), f"hub default for {device}"
    pin = framework_pin(framework)
    if device == "gpu" and pin in GPU_BASE_IMAGES:
        return GPU_BASE_IMAGES[pin], f"CUDA runtime table for {pin}"
    if hub.get("cpu"):  # a GPU version without a GPU base: its CUDA comes from its wheels, if at all
        return check_base_image(hub["cpu"]), f"hub default for cpu: no gpu base for {framework}"
    python = _checked("python version", str(python), _PYTHON, "a version like 3.11")
    return CPU_BASE_IMAGE.format(python=python), f"built-in default for {device}"


def framework_pin(framework: str) -> str | None:
    """The framework requirement a GPU environment pins: 'torch==2.13.0', 'onnxruntime-gpu>=1.20,<2'."""
    pins = FRAMEWORK_REQUIREMENTS.get(framework) or ()
    return GPU_REPLACEMENTS.get(pins[0], pins[0]) if pins else None


def check_base_image_overrides(overrides: dict) -> dict[str, str]:
    """`overrides` when every key is one of BASE_IMAGE_KEYS and every value an image reference."""
    for key, image in overrides.items():
        if key not in BASE_IMAGE_KEYS:
            raise BuildContextError(
                f"Base image key {key!r} is not known: use one of {', '.join(BASE_IMAGE_KEYS)}."
            )
        check_base_image(image)
    return dict(overrides)


# --- the context on disk -----------------------------------------------------------------


def write_build_context(
    spec: ServeSpec,
    dest: Path,
    base_image: str,
    env_key: str,
    requirements: list[str],
    wheelhouse: Path,
    uid: int = DEFAULT_UID,
    **service_options,
) -> Path:
    """Write the build context into `dest` (new or empty) and return it.

    dest/Dockerfile, dest/requirements-<key>.txt, dest/wheelhouse/ (every wheel of the shared
    wheelhouse, hard-linked), dest/model/ (the package files) and dest/service/ (service.py and
    aid_flavors). `service_options` go to `render_service` (workers, threads).
    """
    text = render_dockerfile(spec, base_image, env_key, requirements, uid)
    dest = _empty_dir(Path(dest))
    (dest / requirements_file(env_key)).write_text(render_requirements(requirements), encoding="utf-8")
    link_wheels(Path(wheelhouse), dest / "wheelhouse")
    copy_package(Path(spec.package_dir), dest / "model")
    write_service_dir(spec, dest / "service", package_dir=MODEL_DIR, **service_options)
    (dest / "Dockerfile").write_text(text, encoding="utf-8")
    return dest


def _empty_dir(dest: Path) -> Path:
    if dest.exists() and (not dest.is_dir() or any(dest.iterdir())):
        raise BuildContextError(f"Build context folder {dest} is not empty; pass a new folder.")
    dest.mkdir(parents=True, exist_ok=True)
    return dest


def link_wheels(wheelhouse: Path, dest: Path) -> list[str]:
    """Hard-link (or copy, across filesystems) every `*.whl` of `wheelhouse` into `dest`."""
    wheels = sorted(p for p in wheelhouse.glob("*.whl") if p.is_file() and not p.is_symlink())
    if not wheels:
        raise BuildContextError(
            f"Wheelhouse {wheelhouse} holds no wheels; fill it (fill_wheelhouse) before building."
        )
    dest.mkdir(parents=True)
    for wheel in wheels:
        try:
            os.link(wheel, dest / wheel.name)
        except OSError:
            shutil.copyfile(wheel, dest / wheel.name)
    return [wheel.name for wheel in wheels]


def copy_package(package_dir: Path, dest: Path) -> list[str]:
    """Copy the package's files into `dest`, readable by any user; refuse links and devices."""
    copied = []
    dest.mkdir(parents=True)
    for path in sorted(package_dir.rglob("*")):
        rel = path.relative_to(package_dir)
        if "__pycache__" in rel.parts or path.suffix == ".pyc":
            continue
        if path.is_symlink() or not (path.is_file() or path.is_dir()):
            raise BuildContextError(f"Package file {rel} is a link or a special file; copy it in.")
        target = dest / rel
        if path.is_dir():
            target.mkdir(mode=0o755)
            continue
        shutil.copyfile(path, target)
        target.chmod(0o644)
        copied.append(rel.as_posix())
    return copied
