"""Choosing the runner backend from the configuration, with the reason for the choice."""

from __future__ import annotations

from hub.config import Config
from hub.errors import Unavailable
from runners.base import Runner
from runners.process import ProcessRunner


def process_runner(config: Config) -> ProcessRunner:
    return ProcessRunner(
        envs_dir=config.envs_dir,
        wheelhouse=config.wheelhouse_dir,
        deployments_dir=config.deployments_dir,
        uv_cache=config.uv_cache_dir,
        ready_timeout=config.ready_timeout_seconds,
    )


def choose_runner(config: Config) -> tuple[Runner, str]:
    """(runner, why): `auto` takes the container runner when an engine answers, else the process one."""
    if config.runner == "container":
        raise Unavailable(
            "The container runner is not available in this version of aidhub; "
            "set AIDHUB_RUNNER=process (or auto)."
        )
    if config.runner == "process":
        return process_runner(config), "AIDHUB_RUNNER=process"
    return process_runner(config), "auto: the container runner is not built yet, so models run as processes"
