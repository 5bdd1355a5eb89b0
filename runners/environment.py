"""Per-version virtualenvs: runtime requirements, environment keys, wheelhouse, offline uv builds."""

from __future__ import annotations

import hashlib
import json
import logging
import os
import shutil
import subprocess
import sys
from collections import deque
from pathlib import Path

from .base import TAIL_LINES, LogFn, RunnerError
from .locks import file_lock

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


def fill_wheelhouse(wheelhouse: Path, requirements, log: LogFn, python: str | None = None) -> None:
    """Download wheels for `requirements` with pip (honours this machine's pip config).

    Skipped when a marker for this exact requirement set exists; builds then need no network.
    """
    wheelhouse = Path(wheelhouse)
    wheelhouse.mkdir(parents=True, exist_ok=True)
    marker = wheelhouse / f".filled-{_requirements_hash(requirements, python)}"
    if marker.exists():
        return
    with file_lock(wheelhouse / ".lock", log=log):
        if marker.exists():
            return
        log(f"Downloading wheels for {len(requirements)} requirement(s) into {wheelhouse}")
        run_streaming(_pip_download_command(wheelhouse, requirements, python), log, "pip download")
        _write_atomic(marker, json.dumps(sorted(requirements)))


def _requirements_hash(requirements, python: str | None) -> str:
    text = json.dumps([python or _current_python(), sorted(requirements)])
    return hashlib.sha256(text.encode()).hexdigest()[:16]


def _current_python() -> str:
    return f"{sys.version_info.major}.{sys.version_info.minor}"


def _pip_download_command(wheelhouse: Path, requirements, python: str | None) -> list[str]:
    command = [sys.executable, "-m", "pip", "download", "--disable-pip-version-check"]
    command += ["--progress-bar", "off", "-d", str(wheelhouse)]
    if python and python != _current_python():
        command += ["--python-version", python, "--only-binary=:all:"]
    return [*command, *requirements]


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
    install += ["--find-links", str(wheelhouse), "--compile-bytecode", *requirements]
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
