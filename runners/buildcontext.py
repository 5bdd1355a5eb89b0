"""Container images as Dockerfile text (pure functions of checked values); the files they copy are
written by runners/contextfiles.py.

Two images, layers ordered for reuse:

- the environment image (`render_environment_dockerfile`), built once per environment key and base,
  tagged `aidhub-env:<key>-<base hash>` (`environment_tag`) and labelled `aidhub.role=environment`:
  1. runtime base: `FROM` an image with Python and uv (`choose_base_image`);
  2. dependencies: a build stage copies the wheelhouse and a requirements file named by the key,
     and uv installs them offline into a virtualenv at /opt/env; the final stage copies only
     /opt/env, so the wheels never ship in the image;
- the weights image (`render_weights_dockerfile`), `FROM` the environment image, when a version's
  weights are large (runners/weights.py says when):
  3. the version's weights: its files of WEIGHTS_MIN_BYTES (1 MiB) or more, and the manifest's
     `artifact` (a file or a folder) whatever its size, copied from the context's `weights/` folder;
     tagged `aidhub-weights:<key>` (`weights_tag`), the key a digest of the environment image's id
     and the weight files' paths and sha256, so every version with those bytes on that environment
     builds FROM it and sends no weights;
- the version image (`render_version_dockerfile`), `FROM` the weights image (or the environment
  image, with layer 3 in it, when the weights are small):
  4. its other files (code, card, aid.yaml) from `model/`, then the generated service, last.

A new version with the same requirements builds only layers 3-4 from a context without wheels (no
wheelhouse to send, fill or hash), and one whose weights are the same bytes (only predict.py or the
card changed) builds only layer 4, from a context without the weights. Small weights in the version
image still reuse layer 3 from the builder's cache (its key for a COPY is the instruction's text and
the copied files' names, modes and bytes), but the engine reads them again each build. No package
path ever enters a Dockerfile: which file goes into which layer is decided by where the context
writer puts it, so odd names (spaces, quotes) cannot add a line.

Nothing from a manifest reaches a Dockerfile unchecked: the base and environment images, model
name, version, digest and environment key must match strict patterns, and are also written as JSON
strings wherever the syntax allows; requirements never enter a Dockerfile (they go into the
requirements file, one checked line each). Everything else in the text is constant.
"""

from __future__ import annotations

import hashlib
import json
import re

from vocab.images import HUB_BASE_IMAGE_KEYS, IMAGE, IMAGE_HINT
from vocab.names import DIGEST, MODEL_NAME, PYTHON_VERSION, SEMVER
from vocab.requirements import REQUIREMENT

from .base import RunnerError, ServeSpec
from .environment import FRAMEWORK_REQUIREMENTS, GPU_REPLACEMENTS
from .service import SERVICE_CLASS, SERVICE_MODULE, device_for, openapi_document

APP_DIR = "/app"
MODEL_DIR = f"{APP_DIR}/model"
SERVICE_DIR = f"{APP_DIR}/service"
ENV_DIR = "/opt/env"
WHEELHOUSE_DIR = "/wheelhouse"
PORT = 3000
DEFAULT_UID = 10001
CPU_BASE_IMAGE = "python:{python}-slim"
ENV_REPOSITORY = "aidhub-env"  # environment images: aidhub-env:<env key>-<base hash> (environment_tag)
WEIGHTS_REPOSITORY = "aidhub-weights"  # weights images: aidhub-weights:<weights key> (weights_tag)

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
# Keys of a hub's base image overrides; a manifest's `base_image` names only "cpu" and "gpu".
BASE_IMAGE_KEYS = HUB_BASE_IMAGE_KEYS

# Strict patterns (vocab holds the grammars the registry checks manifests with). Full matches only
# (re.fullmatch), so a trailing newline never passes.
_ENV_KEY = r"[0-9a-f]{8,64}"
_WEIGHTS_KEY = r"[0-9a-f]{64}"


class BuildContextError(RunnerError):
    """A value cannot go into a build context; the message names it and the fix."""


def environment_tag(env_key: str, base_image: str) -> str:
    """`aidhub-env:<env key>-<8 hex of the base image>`: the tag of one environment grown from one
    base (the key alone does not name the base: hubs and manifests choose bases)."""
    base = hashlib.sha256(check_base_image(base_image).encode()).hexdigest()[:8]
    return f"{ENV_REPOSITORY}:{_checked('environment key', env_key, _ENV_KEY, 'the hex key')}-{base}"


def environment_labels(env_key: str, base_image: str) -> dict[str, str]:
    """The labels an environment image carries; a version image overrides `aidhub.role`."""
    return {"aidhub.role": "environment", "aidhub.env": env_key, "aidhub.base": base_image}


def weights_tag(weights_key: str) -> str:
    """`aidhub-weights:<weights key>`: the key already names the environment image (its id)."""
    return f"{WEIGHTS_REPOSITORY}:{_checked('weights key', weights_key, _WEIGHTS_KEY, 'the sha256 hex')}"


def weights_labels(weights_key: str, env_key: str, base_image: str) -> dict[str, str]:
    """The labels a weights image carries; a version image built FROM it keeps `aidhub.weights`
    (which weights it holds) and overrides `aidhub.role`."""
    return {"aidhub.role": "weights", "aidhub.weights": weights_key, "aidhub.env": env_key,
            "aidhub.base": base_image}  # fmt: skip


def render_weights_dockerfile(env_image: str, weights_key: str, env_key: str, base_image: str) -> str:
    """The weights image's Dockerfile: FROM the environment image, the context's `weights/` folder
    into the model folder, and the labels. Constant but for checked values."""
    labels = weights_labels(
        _checked("weights key", weights_key, _WEIGHTS_KEY, "the sha256 hex"),
        _checked("environment key", env_key, _ENV_KEY, "the hex from environment_key()"),
        check_base_image(base_image),
    )
    lines = [
        "# Generated by aidhub from a version spec. Do not edit.",
        "# 3. Weights, shared by every version of this environment with the same weight files.",
        f"FROM {check_base_image(env_image)}",
        f"COPY weights/ {MODEL_DIR}/",
        f"LABEL {_label_pairs(labels)}",
    ]
    return "\n".join(lines) + "\n"


def render_environment_dockerfile(base_image: str, python: str, env_key: str, requirements: list[str]) -> str:
    """The environment image's Dockerfile: runtime base -> dependencies (by `env_key`), installed
    offline from the context's wheelhouse. Built once per key and base; versions grow FROM it."""
    check_requirements(requirements)
    base_image = check_base_image(base_image)
    python = _checked("python version", python, PYTHON_VERSION, "a version like 3.11")
    env_key = _checked("environment key", env_key, _ENV_KEY, "the hex from environment_key()")
    lines = [
        *_dependency_stage(base_image, python, env_key),
        *_runtime_stage(base_image),
        f"LABEL {_label_pairs(environment_labels(env_key, base_image))}",
    ]
    return "\n".join(lines) + "\n"


def render_version_dockerfile(
    spec: ServeSpec, env_image: str, env_key: str, base_image: str, uid: int = DEFAULT_UID,
    with_weights: bool = True,
) -> str:  # fmt: skip
    """The Dockerfile text for `spec`: FROM its environment image -> model files -> labels.

    Two specs with the same environment image and uid give the same text up to `COPY model/`.
    The base image is also a label (`aidhub.base`): an image grown from another base is another image.
    `with_weights=False`: `env_image` is a weights image that holds them, so no `COPY weights/`.
    """
    labels = {
        **_model_labels(spec, env_key),
        "aidhub.role": "version",  # the environment image's own role label is inherited otherwise
        "aidhub.base": check_base_image(base_image),
        "aidhub.openapi": openapi_label(spec),
    }
    uid = _check_uid(uid)
    serve = ["bentoml", "serve", f"{SERVICE_MODULE}:{SERVICE_CLASS}", "--host", "0.0.0.0"]
    lines = [
        "# Generated by aidhub from a version spec. Do not edit.",
        "# 1-2. The environment image: runtime base and dependencies, built once per environment key.",
        f"FROM {check_base_image(env_image)}",
        f"USER {uid}:{uid}",
        f"CMD {_exec([*serve, '--port', str(PORT)])}",
        "",
        *_model_layers(labels, with_weights),
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


def _runtime_stage(base_image: str) -> list[str]:
    return [
        "# The image: the runtime base plus the environment; the wheels stay in the stage above.",
        f"FROM {base_image}",
        f"COPY --from=dependencies {ENV_DIR} {ENV_DIR}",
        f"ENV VIRTUAL_ENV={ENV_DIR} PATH={ENV_DIR}/bin:$PATH HOME=/tmp PYTHONUNBUFFERED=1 "
        "BENTOML_DO_NOT_TRACK=true BENTOML_HOME=/tmp/bentoml",
        f"WORKDIR {SERVICE_DIR}",
        f"EXPOSE {PORT}",
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


def _label_pairs(labels: dict[str, str]) -> str:
    return " ".join(f"{key}={_quoted(value)}" for key, value in labels.items())


def _model_layers(labels: dict[str, str], with_weights: bool = True) -> list[str]:
    weights = [
        "# 3. This version's weights (shared by versions with the same bytes), 4. its other files",
        "# and the generated service.",
        f"COPY weights/ {MODEL_DIR}/",
    ]
    return [
        *(weights if with_weights else ["# 4. Its files but the weights (in the image above), the service."]),
        f"COPY model/ {MODEL_DIR}/",
        f"COPY service/ {SERVICE_DIR}/",
        f"LABEL {_label_pairs(labels)}",
    ]


def _model_labels(spec: ServeSpec, env_key: str) -> dict[str, str]:
    return {
        "aidhub.model": _checked("model name", spec.name, MODEL_NAME, "lower-case letters, digits, '-'"),
        "aidhub.version": _checked("version", spec.version, SEMVER, "a semantic version like 1.2.0"),
        "aidhub.digest": _checked("digest", spec.digest, DIGEST, "the sha256 hex of the package"),
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
        _checked("requirement", str(req).strip(), REQUIREMENT, "a package name with versions")
    return list(requirements)


def check_base_image(image: str) -> str:
    """`image` when it is a reference with a tag or digest (registry/repo:tag, repo@sha256:...)."""
    return _checked("base image", image, IMAGE, IMAGE_HINT)


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
    python = _checked("python version", str(python), PYTHON_VERSION, "a version like 3.11")
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
