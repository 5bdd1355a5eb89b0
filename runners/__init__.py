"""Runners turn a version spec into a running BentoML server: process and container backends."""

from __future__ import annotations

from pathlib import Path

from .base import Instance, LogFn, Runner, RunnerError, ServeSpec

__all__ = ["Instance", "LogFn", "Runner", "RunnerError", "ServeSpec", "make_runner"]
RUNNER_KINDS = ("process", "container")


def make_runner(kind: str, **options) -> Runner:
    """A runner backend by name; `options` are its constructor's paths and settings.

    process: envs_dir, wheelhouse, deployments_dir, uv_cache=None, host, ready_timeout, workers.
    container: docker_host, wheelhouse, contexts_dir, base_image (the CPU base), host, ready_timeout,
    base_images (other bases by key: gpu, torch-gpu, ...), max_memory_bytes, max_cpus (the most a
    version's resources may ask for; the limits themselves come from each ServeSpec), owner (the
    aidhub.hub label that tells this hub's containers from other hubs' on a shared engine).
    """
    if kind == "process":
        from .process import ProcessRunner

        paths = ("envs_dir", "wheelhouse", "deployments_dir", "uv_cache")
        options = {k: Path(v) if k in paths and v is not None else v for k, v in options.items()}
        return ProcessRunner(**options)
    if kind == "container":
        from .container import ContainerRunner

        paths = ("wheelhouse", "contexts_dir")
        options = {k: Path(v) if k in paths and v is not None else v for k, v in options.items()}
        return ContainerRunner(**options)
    raise RunnerError(f"Runner kind {kind!r} is not available; use one of {', '.join(RUNNER_KINDS)}.")
