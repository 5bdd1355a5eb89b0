"""Per-version virtualenvs: runtime requirements, environment keys, wheelhouse, offline uv builds.

Nothing of a package's own build code runs on this host: the wheelhouse takes binary wheels only,
and environments install wheels only. Source archives (for requirements without a wheel) are
fetched as data for the container runner, whose build stage builds them (runners/sources.py).
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import platform
import re
import shutil
import subprocess
import sys
import tempfile
from collections import deque
from pathlib import Path

from vocab.requirements import REQUIREMENT_HINT, is_requirement

from .base import TAIL_LINES, LogFn, RunnerError
from .locks import file_lock
from .sources import SourceInfo, fetch_source, find_source, placeholder_name, read_source, write_placeholder

log = logging.getLogger(__name__)

BENTOML_REQUIREMENT = "bentoml>=1.4.30,<1.5"
# uvicorn picks these up on its own: C HTTP parser and event loop, ~20% less CPU per request.
SERVER_REQUIREMENTS = ("uvloop>=0.19", "httptools>=0.6")
FRAMEWORK_REQUIREMENTS = {
    "onnx": ("onnxruntime>=1.20,<2",),
    "torch": ("torch==2.13.0",),
    "sklearn": ("scikit-learn>=1.5,<2", "joblib"),
    "python": (),
}
GPU_REPLACEMENTS = {"onnxruntime>=1.20,<2": "onnxruntime-gpu>=1.20,<2"}
READY_MARKER = ".ready"
SOURCES_DIR = "sources"  # wheelhouse/sources/: source archives, for container builds only
MAX_SOURCES = 10  # requirements without a wheel that one set may need


def runtime_requirements(framework: str, gpu: bool = False) -> list[str]:
    """What the generated service needs beside the model's own requirements."""
    if framework not in FRAMEWORK_REQUIREMENTS:
        known = ", ".join(FRAMEWORK_REQUIREMENTS)
        raise RunnerError(f"Framework {framework!r} has no runtime; use one of {known}.")
    extra = [GPU_REPLACEMENTS.get(r, r) if gpu else r for r in FRAMEWORK_REQUIREMENTS[framework]]
    return [BENTOML_REQUIREMENT, *SERVER_REQUIREMENTS, "numpy>=1.26,<3", *extra]


def combined_requirements(framework: str, requirements, gpu: bool = False) -> list[str]:
    """Runtime + model requirements, de-duplicated, in a stable (sorted) order."""
    reqs = {r.strip() for r in [*runtime_requirements(framework, gpu), *requirements] if r.strip()}
    for req in reqs:
        if req.startswith("-"):
            raise RunnerError(f"Requirement {req!r} looks like an option; list package names only.")
        if not is_requirement(req):  # a path or URL: pip would build it here, wheels-only or not
            raise RunnerError(
                f"Requirement {req!r} is not a plain requirement; use {REQUIREMENT_HINT} (no paths or URLs)."
            )
    return sorted(reqs, key=str.lower)


def environment_key(python: str, framework: str, requirements, gpu: bool | str) -> str:
    """A stable id of an environment: sha256 of canonical JSON, first 16 hex characters."""
    canonical = json.dumps(
        {
            "python": str(python),
            "framework": framework,
            "requirements": sorted({str(r).strip() for r in requirements}, key=str.lower),
            "gpu": str(gpu).lower() not in ("0", "false", "none", ""),
        },
        sort_keys=True,
        separators=(",", ":"),
    )
    return hashlib.sha256(canonical.encode()).hexdigest()[:16]


def fill_wheelhouse(
    wheelhouse: Path, requirements, log: LogFn, python: str | None = None, sources: bool = False
) -> list[Path]:
    """Download binary wheels for `requirements` with pip (honours this machine's pip config).

    Wheels only (`--only-binary=:all:`): no package's build code ever runs on this host. A
    requirement with no wheel for the target raises NoWheel naming it, unless `sources`: then its
    source archive is fetched as data (runners/sources.py) into wheelhouse/sources/, the wheels
    its build needs are added, and the archives are returned for a build container to build.
    Skipped when a marker for this exact requirement set exists; builds then need no network.
    """
    wheelhouse = Path(wheelhouse)
    wheelhouse.mkdir(parents=True, exist_ok=True)
    marker = wheelhouse / f".wheels-only-{_requirements_hash(requirements, python)}"
    found = _marked_sources(marker, wheelhouse)
    if found is None:
        with file_lock(wheelhouse / ".lock", log=log):
            found = _marked_sources(marker, wheelhouse)
            if found is None:
                found = _resolve(wheelhouse, list(requirements), python, log, sources)
                _write_atomic(marker, json.dumps({"requirements": sorted(requirements), "sources": found}))
    if found and not sources:
        raise no_wheel(found[0]["requirement"], python, log, exists=True)
    return [wheelhouse / SOURCES_DIR / entry["file"] for entry in found]


def _marked_sources(marker: Path, wheelhouse: Path) -> list[dict] | None:
    """The source archives a filled set needs ([] for none), or None when it is not filled."""
    try:
        data = json.loads(marker.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    found = data.get("sources", []) if isinstance(data, dict) else []  # a list: an older marker
    if any(not (wheelhouse / SOURCES_DIR / entry["file"]).is_file() for entry in found):
        return None
    return found


def _resolve(wheelhouse: Path, requirements: list[str], python, log: LogFn, sources: bool) -> list[dict]:
    """pip download, wheels only; each requirement pip finds no wheel for gets a placeholder (when
    `sources`) and pip runs again. The placeholders leave the wheelhouse whatever happens."""
    log(f"Downloading wheels (binary only) for {len(requirements)} requirement(s) into {wheelhouse}")
    infos: dict[str, SourceInfo] = {}
    found: list[dict] = []
    with tempfile.TemporaryDirectory(prefix="aidhub-placeholders-") as stand_ins:
        try:
            while (missing := _pip_download(wheelhouse, requirements, python, log, stand_ins)) is not None:
                if not sources:
                    raise no_wheel(missing, python, log)
                if missing in infos or len(infos) >= MAX_SOURCES:
                    raise RunnerError(f"pip still finds no wheel for {missing!r} (sources: {list(infos)}).")
                path, infos[missing] = _fetch_source(missing, wheelhouse / SOURCES_DIR, python, log)
                write_placeholder(infos[missing], Path(stand_ins))
                found.append({"requirement": missing, "file": path.name})
        finally:
            for info in infos.values():
                (wheelhouse / placeholder_name(info)).unlink(missing_ok=True)
    build_requires = sorted({r for info in infos.values() for r in info.build_requires})
    if build_requires:
        log(f"Downloading the wheels that building {', '.join(infos)} needs: {', '.join(build_requires)}")
        if _pip_download(wheelhouse, build_requires, python, log) is not None:
            raise RunnerError(
                f"The build requirements {build_requires} have no wheels; they cannot be built."
            )
    return found


def _pip_download(wheelhouse: Path, requirements, python, log: LogFn, find_links: str = "") -> str | None:
    """Run pip download (wheels only); the requirement pip found no wheel for, None on success."""
    command = _pip_download_command(wheelhouse, requirements, python)
    if find_links:
        command[-len(requirements) : -len(requirements)] = ["--find-links", find_links]
    try:
        run_streaming(command, log, "pip download")
    except RunnerError as e:
        missing = re.search(r"No matching distribution found for (\S+)", e.log_tail)
        if missing is None:
            raise
        return missing.group(1)
    return None


def _fetch_source(requirement: str, folder: Path, python, log: LogFn) -> tuple[Path, SourceInfo]:
    """Fetch the source archive of `requirement` (as bytes: nothing in it runs) and read it."""
    source = find_source(requirement, python or _current_python())
    if source is None:
        raise no_wheel(requirement, python, log, exists=False)
    log(f"No wheel for {requirement!r}: fetching its source archive {source.filename} (built only "
        "inside the image's build container, never on this host)")  # fmt: skip
    info = read_source(fetch_source(source, folder))
    log(f"{source.filename} names its dependencies (read from PKG-INFO, not run): "
        f"{', '.join(info.requires_dist) or 'none'}")  # fmt: skip
    if "Requires-Dist" in info.dynamic:
        log(f"NOTE: {source.filename} computes its dependencies when built; list them in the "
            "version's requirements.")  # fmt: skip
    return folder / source.filename, info


def _requirements_hash(requirements, python: str | None) -> str:
    text = json.dumps([python or _current_python(), sorted(requirements)])
    return hashlib.sha256(text.encode()).hexdigest()[:16]


def _current_python() -> str:
    return f"{sys.version_info.major}.{sys.version_info.minor}"


def _pip_download_command(wheelhouse: Path, requirements, python: str | None) -> list[str]:
    command = [sys.executable, "-m", "pip", "download", "--disable-pip-version-check"]
    command += ["--progress-bar", "off", "-d", str(wheelhouse)]
    command += ["--only-binary=:all:"]  # never an sdist: pip would run its build code here
    if python and python != _current_python():
        command += ["--python-version", python]
    return [*command, *requirements]


class NoWheel(RunnerError):
    """A requirement has no binary wheel for the target (and is not built here)."""

    def __init__(self, message: str, requirement: str):
        super().__init__(message)
        self.requirement = requirement


def no_wheel(requirement: str, python: str | None, log: LogFn, exists: bool | None = None) -> NoWheel:
    """The error (also written to `log`) for a requirement no wheel fits; `exists`: whether a
    source archive of it is on the index (None: look it up)."""
    python = python or _current_python()
    target = f"CPython {python} on {sys.platform} {platform.machine()}"
    if exists is None:
        exists = find_source(requirement, python) is not None
    if exists:
        message = (
            f"requirement {requirement!r} has no binary wheel for {target}; the process runner "
            "does not build source packages on the host. Use a version with a wheel, or the "
            "container runner, which builds it inside a build container."
        )
    else:
        message = (
            f"requirement {requirement!r} matches no wheel for {target} and no source archive on "
            "the package indexes pip uses; check the name and the version."
        )
    log(message)
    return NoWheel(message, requirement)


def ensure_environment(
    envs_dir: Path,
    key: str,
    wheelhouse: Path,
    requirements,
    python: str,
    log: LogFn,
    uv_cache: Path | None = None,
) -> Path:
    """Create `envs_dir/key` offline from the wheelhouse (once); return its path.

    A `.ready` marker is written last; an environment without it is wiped and rebuilt.
    Concurrent builds of one key wait for each other on a file lock (runners/locks.py).
    """
    env = Path(envs_dir) / key
    if (env / READY_MARKER).exists():
        return env
    Path(envs_dir).mkdir(parents=True, exist_ok=True)
    with file_lock(Path(envs_dir) / f".{key}.lock", log=log):
        if (env / READY_MARKER).exists():
            return env
        _build_environment(env, Path(wheelhouse), list(requirements), python, log, uv_cache)
    return env


def _build_environment(env: Path, wheelhouse: Path, requirements, python, log, uv_cache) -> None:
    if env.exists():
        log(f"Removing half-built environment {env}")
        shutil.rmtree(env)
    uv = _uv_binary()
    child_env = _uv_env(uv_cache)
    log(f"Creating environment {env.name} (python {python})")
    run_streaming([uv, "venv", "--python", python, str(env)], log, "uv venv", child_env)
    install = [uv, "pip", "install", "--python", str(env / "bin" / "python"), "--no-index"]
    install += [
        "--find-links",
        str(wheelhouse),
        "--only-binary",
        ":all:",
        "--compile-bytecode",
        *requirements,
    ]
    run_streaming(install, log, "uv pip install", child_env)
    _write_atomic(env / READY_MARKER, json.dumps({"python": python, "requirements": requirements}))
    log(f"Environment {env.name} ready")


def _uv_binary() -> str:
    from uv import find_uv_bin

    return find_uv_bin()


def _uv_env(uv_cache: Path | None) -> dict[str, str]:
    """The child's environment: ours minus virtualenv/Python overrides, no Python downloads."""
    drop = {"VIRTUAL_ENV", "PYTHONPATH", "PYTHONHOME", "UV_INDEX_URL", "UV_EXTRA_INDEX_URL"}
    env = {k: v for k, v in os.environ.items() if k not in drop}
    env["UV_PYTHON_DOWNLOADS"] = "never"
    if uv_cache is not None:
        env["UV_CACHE_DIR"] = str(uv_cache)
    return env


def run_streaming(command: list[str], log: LogFn, what: str, env: dict | None = None) -> None:
    """Run `command`, passing each output line to `log`; RunnerError with the tail on failure.

    Under `aid serve` gevent's monkey-patching makes this `subprocess` gevent's: reading the output
    and waiting for the exit yield to the hub's other greenlets instead of blocking its thread.
    """
    tail: deque[str] = deque(maxlen=TAIL_LINES)
    with subprocess.Popen(
        command, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, env=env
    ) as proc:
        try:
            for line in proc.stdout:
                tail.append(line.rstrip("\n"))
                log(tail[-1])
        except BaseException:  # the log refused the line (a cancelled build): stop the command too
            proc.kill()
            raise
    if proc.returncode != 0:
        raise RunnerError(
            f"{what} failed with exit code {proc.returncode}; read the log above, fix the "
            "requirements (or fill the wheelhouse while online) and build again.",
            log_tail="\n".join(tail),
        )


def _write_atomic(path: Path, text: str) -> None:
    tmp = path.with_name(f"{path.name}.tmp{os.getpid()}")
    tmp.write_text(text, encoding="utf-8")
    os.replace(tmp, path)
