"""AIDHUB_RUNNER: auto takes the container runner when an engine answers, else the process runner."""

import pytest

from hub.config import Config
from hub.errors import Unavailable
from hub.runner_choice import choose_runner

NOBODY = "unix:///nonexistent/docker.sock"


def config(tmp_path, runner: str, docker_host: str) -> Config:
    return Config.load(env={}, home=tmp_path, runner=runner, docker_host=docker_host)


def test_auto_takes_the_container_runner_when_the_engine_answers(tmp_path, engine, docker_host):
    runner, why = choose_runner(config(tmp_path, "auto", docker_host))
    assert (runner.kind, why) == ("container", f"auto: a container engine answers at {docker_host}")


def test_auto_falls_back_to_processes_and_says_why(tmp_path):
    runner, why = choose_runner(config(tmp_path, "auto", NOBODY))
    assert runner.kind == "process"
    assert why.startswith(f"auto: no container engine answers at {NOBODY} (")


def test_container_without_an_engine_is_refused_with_the_fix(tmp_path):
    with pytest.raises(Unavailable) as e:
        choose_runner(config(tmp_path, "container", NOBODY))
    assert e.value.message.startswith(f"AIDHUB_RUNNER=container, but no container engine answers at {NOBODY}")
    assert e.value.message.endswith(
        "(scripts/container-engine.sh prints a DOCKER_HOST) or set AIDHUB_RUNNER=process."
    )


def test_process_is_taken_without_asking_any_engine(tmp_path):
    runner, why = choose_runner(config(tmp_path, "process", NOBODY))
    assert (runner.kind, why) == ("process", "AIDHUB_RUNNER=process")
