"""Environment images on the container runner, with the real engine at DOCKER_HOST: a version whose
environment image exists builds FROM it with a context of the package and the service only (no
wheels resolved, downloaded or sent, so a fresh hub home takes that path too); changed requirements
build a new environment image first. A missing engine FAILS these tests (fixture `engine`)."""

from __future__ import annotations

import dataclasses
import io
import re
import secrets
import tarfile
import time
from pathlib import Path

import pytest

from runners import make_runner
from runners.buildcontext import environment_tag
from runners.container import ContainerRunner, image_tag
from runners.engine import GARBAGE_EVERY_S, PACK_HERE_MAX_BYTES, Engine, _packed
from runners.environment import fill_wheelhouse
from tests.conftest import BASE_IMAGE
from tests.test_runner_process import WHEELHOUSE, predict, python_spec

FAST = "exists: building FROM it"
STEP = re.compile(r"(?:\[\d+/\d+\] )?STEP \d+/\d+: (.*)")  # multi-stage builds number stages


def container_runner(docker_host: str, folder: Path, wheelhouse: Path = WHEELHOUSE) -> ContainerRunner:
    """A container runner whose home is `folder` (its build contexts) and whose wheelhouse is
    `wheelhouse` (the shared test cache unless a test gives it a new one)."""
    return make_runner(
        "container", docker_host=docker_host, wheelhouse=wheelhouse, contexts_dir=folder / "contexts",
        base_image=BASE_IMAGE, ready_timeout=90.0, owner=f"tests-{folder.name}",
    )  # fmt: skip


@pytest.fixture
def runner(engine, docker_host, tmp_path):
    backend = container_runner(docker_host, tmp_path)
    yield backend
    for instance in backend.instances():
        backend.stop(instance)
    backend.close()


def new_version(version: str, **changes):
    """runner_echo under `version` with a new digest: images persist in the engine between runs."""
    return dataclasses.replace(
        python_spec("runner_echo", version=version), digest=secrets.token_hex(32), **changes
    )


def steps(lines: list[str]) -> list[str]:
    """The Dockerfile steps the engine reported building, in order."""
    return [m.group(1) for m in map(STEP.match, lines) if m]


def remove_images(engine, label: str) -> None:
    for image in engine.images.list(filters={"label": label}):
        engine.images.remove(image.id, force=True)


@pytest.mark.slow
def test_a_new_version_builds_from_the_environment_image_without_wheels(runner, engine):
    first, second = new_version("10.0.0"), new_version("10.1.0")
    tag = environment_tag(runner.env_key(first), BASE_IMAGE)
    try:
        runner.build(first, lambda line: None)  # the environment image: built, or there already
        lines, began = [], time.monotonic()
        instance = runner.start(second, lines.append)
        print(f"new version, known environment: build + start to ready {time.monotonic() - began:.1f} s")
        said = next(line for line in lines if FAST in line)
        assert said.startswith(f"The environment image {tag} exists: building FROM it")
        built = steps(lines)
        assert re.fullmatch(rf"FROM \S*{re.escape(tag)}", built[0]), built
        assert not [s for s in built if "wheelhouse" in s or s.startswith("RUN")], built
        context = next(line for line in lines if line.startswith(f"Building image {image_tag(second)} FROM"))
        assert "(context Dockerfile, model/, service/, weights/: " in context
        assert not any("Downloading wheels" in line or "wheelhouse" in line for line in lines), lines
        reply = predict(instance, {"text": "fast", "values": [1, 2.5]})
        assert reply.json() == {"upper": "FAST", "total": 3.5, "setup_calls": 1}
        labels = engine.images.get(image_tag(second)).labels
        assert (labels["aidhub.role"], labels["aidhub.version"]) == ("version", "10.1.0")
        assert engine.images.get(tag).labels["aidhub.role"] == "environment"
    finally:
        for spec in (first, second):
            remove_images(engine, f"aidhub.digest={spec.digest}")


@pytest.mark.slow
def test_a_fresh_hub_home_takes_the_fast_path_with_no_wheelhouse_and_no_index(
    runner, engine, docker_host, tmp_path, monkeypatch
):
    first, second = new_version("10.2.0"), new_version("10.3.0")
    fresh = container_runner(docker_host, tmp_path / "fresh-home", tmp_path / "fresh-home" / "wheelhouse")
    try:
        runner.build(first, lambda line: None)  # the engine has the environment image
        monkeypatch.setenv("PIP_NO_INDEX", "1")  # a download would fail: the fast path needs none
        monkeypatch.setenv("PIP_FIND_LINKS", str(tmp_path / "nowhere"))
        lines = []
        instance = fresh.start(second, lines.append)
        assert any(FAST in line for line in lines), lines
        assert not (tmp_path / "fresh-home" / "wheelhouse").exists()
        assert predict(instance, {"text": "home", "values": []}).json()["upper"] == "HOME"
    finally:
        for instance in fresh.instances():
            fresh.stop(instance)
        fresh.close()
        for spec in (first, second):
            remove_images(engine, f"aidhub.digest={spec.digest}")


@pytest.mark.slow
def test_changed_requirements_build_a_new_environment_image_first(engine, docker_host, tmp_path, monkeypatch):
    # a requirement no earlier run had (a new environment key) that the shared wheelhouse satisfies,
    # resolved offline from it into this test's own wheelhouse: the full path, with a small context
    spec = new_version("10.4.0", requirements=(f"numpy>=1.26,!=1.{secrets.randbelow(10**6)}.99",))
    runner = container_runner(docker_host, tmp_path, tmp_path / "wheels")
    fill_wheelhouse(WHEELHOUSE, runner.requirements(new_version("10.4.1")), lambda line: None, "3.11")
    monkeypatch.setenv("PIP_NO_INDEX", "1")
    monkeypatch.setenv("PIP_FIND_LINKS", str(WHEELHOUSE))
    env_key = runner.env_key(spec)
    assert env_key != runner.env_key(new_version("10.4.1"))
    tag = environment_tag(env_key, BASE_IMAGE)
    lines = []
    try:
        runner.build(spec, lines.append)
        assert not any(FAST in line for line in lines), lines
        assert any(line.startswith("Downloading wheels (binary only)") for line in lines)
        assert f"Building environment image {tag} FROM {BASE_IMAGE} (hub default for cpu)" in lines
        built = steps(lines)
        install = next(i for i, s in enumerate(built) if s.startswith('RUN ["uv", "pip", "install"'))
        assert "COPY wheelhouse/ /wheelhouse/" in built[:install]
        assert any(re.fullmatch(rf"FROM \S*{re.escape(tag)}", step) for step in built[install:]), built
        environment = engine.images.get(tag)
        assert (environment.labels["aidhub.role"], environment.labels["aidhub.env"]) == (
            "environment",
            env_key,
        )
        assert engine.images.get(image_tag(spec)).labels["aidhub.env"] == env_key
    finally:
        runner.close()
        remove_images(engine, f"aidhub.env={env_key}")


# --- what a new version's build no longer waits for (runners/engine.py) ---------------------


def test_one_ping_connects_and_tells_podman_from_docker(engine, docker_host):
    """The engine's reply to the ping gives its API version and whether it is Podman, so the
    first build does not ask /version (a quarter of a second on Podman 4.3)."""
    own = Engine(docker_host)
    try:
        components = engine.version().get("Components") or []
        podman = any("podman" in str(c.get("Name", "")).lower() for c in components)
        assert own.client.api.api_version == engine.version()["ApiVersion"]
        assert own._podman is (True if podman else None)  # Docker: asked when needed
        assert own.is_podman() is podman
    finally:
        own.close()


def test_small_contexts_are_packed_here_and_large_ones_by_a_child(tmp_path):
    small, large = tmp_path / "small", tmp_path / "large"
    for folder, size in ((small, 10), (large, PACK_HERE_MAX_BYTES + 1)):
        (folder / "model").mkdir(parents=True)
        (folder / "Dockerfile").write_text("FROM scratch\n")
        (folder / "model" / "weights.bin").write_bytes(b"w" * size)
    for folder in (small, large):
        with _packed(folder) as archive:
            here = isinstance(archive, io.BytesIO)
            with tarfile.open(fileobj=archive) as tar:
                members = {m.name: m.size for m in tar.getmembers() if m.isfile()}
        assert here is (folder == small), folder
        assert members == {
            "Dockerfile": 13,
            "model/weights.bin": (folder / "model/weights.bin").stat().st_size,
        }
    assert sorted(p.name for p in tmp_path.iterdir()) == ["large", "small"]  # the child's archive is gone


@pytest.mark.slow
def test_a_start_after_a_build_finds_the_image_it_built_by_its_labels(runner, engine):
    spec = new_version("10.5.0")
    try:
        env_key = runner.build(spec, lambda line: None)
        built = runner._built[spec.key]
        assert engine.images.get(image_tag(spec)).id == built
        labels = {"aidhub.version": spec.version, "aidhub.digest": spec.digest, "aidhub.env": env_key}
        assert runner.engine.labelled_image(built, labels)["Id"] == built
        assert runner.engine.labelled_image(built, {**labels, "aidhub.version": "0.0.1"}) is None
        assert runner.engine.labelled_image("aidhub/no-such-image:0", {}) is None
        assert runner._version_image_of(spec, env_key, runner.base_image_of(spec)[0]) == built
    finally:
        remove_images(engine, f"aidhub.digest={spec.digest}")


def test_build_garbage_is_looked_for_at_most_every_interval(docker_host):
    own = Engine(docker_host)
    try:
        own.collect_build_garbage()
        first = own._garbage_checked_at
        own.collect_build_garbage()  # within GARBAGE_EVERY_S: no second look
        assert first is not None and own._garbage_checked_at == first
        own._garbage_checked_at = first - GARBAGE_EVERY_S
        own.collect_build_garbage()
        assert own._garbage_checked_at > first
    finally:
        own.close()
