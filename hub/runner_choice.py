"""Choosing the runner backend from the configuration, with the reason for the choice."""

from __future__ import annotations

import hashlib

from hub.config import Config
from hub.errors import Unavailable
from runners.base import Runner
from runners.container import ContainerRunner
from runners.process import ProcessRunner

DEFAULT_DOCKER_HOST = "unix:///var/run/docker.sock"


def process_runner(config: Config) -> ProcessRunner:
    return ProcessRunner(
        envs_dir=config.envs_dir,
        wheelhouse=config.wheelhouse_dir,
        deployments_dir=config.deployments_dir,
        uv_cache=config.uv_cache_dir,
        ready_timeout=config.ready_timeout_seconds,
    )


def container_runner(config: Config, docker_host: str) -> ContainerRunner:
    return ContainerRunner(
        docker_host=docker_host,
        wheelhouse=config.wheelhouse_dir,
        contexts_dir=config.home / "build-contexts",
        base_image=config.base_image,
        base_images=config.base_images,
        max_memory_bytes=config.max_memory_bytes,
        max_cpus=config.max_cpus,
        ready_timeout=config.ready_timeout_seconds,
        owner=hub_id(config),
    )


def hub_id(config: Config) -> str:
    """A stable id of this hub (its home folder) for labels on what it starts in a shared engine."""
    return hashlib.sha256(str(config.home).encode()).hexdigest()[:12]


def engine_problem(docker_host: str) -> str | None:
    """None when a Docker-Engine-API engine answers at `docker_host`, else why not."""
    import docker  # the SDK; only the hub process that chooses a runner loads it

    try:
        client = docker.DockerClient(base_url=docker_host, timeout=10)
        try:
            client.ping()
        finally:
            client.close()
    except Exception as e:  # the SDK raises DockerException, requests and OS errors alike
        return f"{e.__class__.__name__}: {str(e)[:200]}"
    return None


def choose_runner(config: Config) -> tuple[Runner, str]:
    """(runner, why): `auto` takes the container runner when an engine answers, else the process one."""
    if config.runner == "process":
        return process_runner(config), "AIDHUB_RUNNER=process"
    host = config.docker_host or DEFAULT_DOCKER_HOST
    problem = engine_problem(host)
    if config.runner == "container":
        if problem:
            raise Unavailable(
                f"AIDHUB_RUNNER=container, but no container engine answers at {host} ({problem}). Start one "
                "(scripts/container-engine.sh prints a DOCKER_HOST) or set AIDHUB_RUNNER=process."
            )
        return container_runner(config, host), f"AIDHUB_RUNNER=container: the engine at {host} answers"
    if problem:
        return process_runner(config), f"auto: no container engine answers at {host} ({problem})"
    return container_runner(config, host), f"auto: a container engine answers at {host}"
