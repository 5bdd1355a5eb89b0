"""The container runner beyond the shared contract (test_runner_process.py runs that contract
against both backends): real images and containers through the engine at DOCKER_HOST (Podman's
Docker-compatible service here). A missing engine FAILS these tests (fixture `engine`)."""

from __future__ import annotations

import dataclasses
import secrets
import time
from pathlib import Path

import httpx
import pytest

from runners import RunnerError, make_runner
from runners.buildcontext import environment_tag, openapi_label
from runners.container import image_tag
from tests.conftest import BASE_IMAGE
from tests.test_runner_process import WHEELHOUSE, predict, python_spec

GIB = 1024**3


@pytest.fixture
def runner(engine, docker_host, tmp_path):
    backend = make_runner(
        "container",
        docker_host=docker_host,
        wheelhouse=WHEELHOUSE,
        contexts_dir=tmp_path / "contexts",
        base_image=BASE_IMAGE,
        ready_timeout=90.0,
        max_memory_bytes=GIB,
        max_cpus=1.5,
        owner=f"tests-{tmp_path.name}",  # instances() lists this test's containers only
    )
    yield backend
    for instance in backend.instances():
        backend.stop(instance)
    backend.close()


def _images_of(engine, spec) -> list:
    found = engine.images.list(filters={"label": f"aidhub.model={spec.name}"})
    return [i for i in found if i.labels.get("aidhub.version") == spec.version]


def test_no_engine_is_a_runner_error_naming_docker_host(tmp_path):
    backend = make_runner(
        "container",
        docker_host="unix:///nonexistent/aidhub.sock",
        wheelhouse=WHEELHOUSE,
        contexts_dir=tmp_path,
        base_image=BASE_IMAGE,
    )
    with pytest.raises(RunnerError, match="No container engine answers at DOCKER_HOST=unix:///nonexistent"):
        backend.build(python_spec("runner_echo"), lambda line: None)


def test_image_tag_is_valid_for_any_semver():
    spec = dataclasses.replace(python_spec("runner_echo", version="1.0.0-rc.1+build.7"), digest="ab" * 32)
    assert image_tag(spec) == "aidhub/runner-echo:1.0.0-rc.1_build.7-abababababab"


def test_gpu_required_on_an_engine_without_gpu_runtime_is_refused_before_building(runner, engine):
    spec = dataclasses.replace(python_spec("runner_echo", version="3.0.0", name="runner-gpu"), gpu="1")
    lines = []
    with pytest.raises(RunnerError) as caught:
        runner.start(spec, lines.append)
    assert str(caught.value).startswith(
        "Model 'runner-gpu' version '3.0.0' requires 1 GPU(s) but the container engine at "
        f"DOCKER_HOST={runner.docker_host} has no GPU runtime;"
    )
    assert lines == []  # nothing was downloaded or built
    assert _images_of(engine, spec) == []
    assert engine.containers.list(all=True, filters={"label": "aidhub.model=runner-gpu"}) == []


@pytest.mark.slow
def test_gpu_optional_runs_on_cpu_with_a_warning(runner):
    spec = dataclasses.replace(python_spec("runner_echo", version="3.1.0"), gpu="optional")
    lines = []
    instance = runner.start(spec, lines.append)
    assert any(line.startswith("WARNING: runner-echo 3.1.0 asks for an optional GPU") for line in lines)
    assert predict(instance, {"text": "cpu", "values": [1]}).json()["upper"] == "CPU"


@pytest.mark.slow
def test_container_runs_confined_labelled_and_limited_by_the_manifest(runner, engine):
    spec = python_spec("runner_echo", version="4.0.0")
    odd = 'odd "$HOME" ${PATH} \\ name'  # reaches the image only inside the aidhub.openapi label
    spec = dataclasses.replace(spec, cpus=0.5, memory_bytes=256 * 1024**2, outputs={**spec.outputs, odd: {}})
    lines = []
    instance = runner.start(spec, lines.append)
    assert "Limits: 0.5 CPU(s), memory 256Mi (resources in aid.yaml)" in lines
    container = engine.containers.get(instance.container_id)
    host_config = container.attrs["HostConfig"]
    assert container.attrs["Config"]["User"] == "10001:10001"
    assert host_config["ReadonlyRootfs"] is True
    assert not host_config["Privileged"]
    assert host_config["NetworkMode"] != "host"
    assert any("no-new-privileges" in opt for opt in host_config["SecurityOpt"])
    assert host_config["NanoCpus"] == 500_000_000
    assert host_config["Memory"] == 268_435_456
    binding = container.attrs["NetworkSettings"]["Ports"]["3000/tcp"][0]
    assert (binding["HostIp"], int(binding["HostPort"])) == ("127.0.0.1", instance.port)
    labels = container.labels
    assert (labels["aidhub.model"], labels["aidhub.version"], labels["aidhub.digest"]) == (
        "runner-echo", "4.0.0", "0" * 64,
    )  # fmt: skip
    assert (labels["aidhub.env"], labels["aidhub.base"]) == (instance.env_key, BASE_IMAGE)
    assert labels["aidhub.openapi"] == openapi_label(spec)  # read back exactly, nothing expanded
    assert (instance.pid, instance.runner) == (None, "container")
    script = (
        "id -u; grep -E '^(CapEff|NoNewPrivs)' /proc/1/status; touch /x 2>&1; touch /tmp/y && echo tmp-ok"
    )
    output = container.exec_run(["sh", "-c", script]).output.decode()
    assert output.splitlines()[0] == "10001"
    assert "CapEff:\t0000000000000000" in output and "NoNewPrivs:\t1" in output
    assert "Read-only file system" in output and "tmp-ok" in output


@pytest.mark.slow
def test_killed_from_outside_is_not_alive_and_starts_again(runner, engine):
    spec = python_spec("runner_echo", version="5.0.0")
    instance = runner.start(spec, lambda line: None)
    engine.containers.get(instance.container_id).kill()
    deadline = time.monotonic() + 10
    while runner.alive(instance) and time.monotonic() < deadline:
        time.sleep(0.1)
    assert not runner.alive(instance)
    with pytest.raises(httpx.ConnectError):
        httpx.get(f"{instance.url}/livez", timeout=2)
    again = runner.start(spec, lambda line: None)  # the dead container is cleared, not refused
    assert runner.alive(again) and again.container_id != instance.container_id
    assert predict(again, {"text": "back", "values": []}).json()["upper"] == "BACK"
    runner.stop(instance)  # stopping the killed one is a no-op and leaves the new one running
    assert runner.alive(again)


@pytest.mark.slow
def test_starting_a_running_version_again_is_refused(runner):
    spec = python_spec("runner_echo", version="5.1.0")
    runner.start(spec, lambda line: None)
    with pytest.raises(RunnerError, match="already runs here"):
        runner.start(spec, lambda line: None)


@pytest.mark.slow
def test_same_requirements_reuse_the_image_and_the_environment_image(runner, engine):
    # fresh digests: images persist in the engine between runs, and these must really be built
    first = dataclasses.replace(python_spec("runner_echo", version="6.0.0"), digest=secrets.token_hex(32))
    second = dataclasses.replace(python_spec("runner_echo", version="6.1.0"), digest=secrets.token_hex(32))
    try:
        runner.build(first, lambda line: None)
        lines = []
        assert runner.build(first, lines.append) == runner.env_key(first)
        assert lines == []  # found by its labels: nothing built again
        began = time.monotonic()
        instance = runner.start(second, lines.append)
        warm_start_s = time.monotonic() - began
        assert instance.env_key == runner.env_key(first)
        tag = environment_tag(runner.env_key(first), BASE_IMAGE)
        assert any(line.startswith(f"The environment image {tag} exists: building FROM it") for line in lines)
        assert not any("uv" in line and "--no-index" in line for line in lines)  # no install step at all
        print(f"warm build + start to ready: {warm_start_s:.1f} s")
        assert warm_start_s < 15, warm_start_s
        runner.stop(instance)
    finally:
        for spec in (first, second):
            for image in engine.images.list(filters={"label": f"aidhub.digest={spec.digest}"}):
                engine.images.remove(image.id, force=True)


@pytest.mark.slow
def test_stop_finds_the_container_by_labels_without_its_id(runner):
    spec = python_spec("runner_echo", version="7.0.0")
    instance = runner.start(spec, lambda line: None)
    bare = dataclasses.replace(instance, container_id=None)
    assert runner.alive(bare)
    runner.stop(bare)
    assert not runner.alive(instance)


def test_version_asking_more_than_the_hub_maximum_is_refused_before_building(runner, engine):
    spec = dataclasses.replace(
        python_spec("runner_echo", version="8.0.0", name="runner-greedy"), cpus=4.0, memory_bytes=2 * GIB
    )
    lines = []
    with pytest.raises(RunnerError) as caught:
        runner.start(spec, lines.append)
    assert str(caught.value) == (
        "Model 'runner-greedy' version '8.0.0' asks for more than this hub allows: resources.memory 2Gi "
        "is over the maximum 1Gi (AIDHUB_MAX_MEMORY); resources.cpu 4 is over the maximum 1.5 "
        "(AIDHUB_MAX_CPUS). Publish a version whose aid.yaml asks for less, or ask the hub's admin to "
        "raise the maximum."
    )
    assert lines == [] and _images_of(engine, spec) == []
    at_the_cap = dataclasses.replace(spec, cpus=1.5, memory_bytes=GIB, gpu="1")
    with pytest.raises(RunnerError, match="requires 1 GPU"):  # past the limits check, refused next
        runner.build(at_the_cap, lines.append)


@pytest.mark.slow
def test_manifest_base_image_override_is_what_the_image_grows_from(runner, engine):
    override = f"aidhub/base-override:t{secrets.token_hex(4)}"  # the local base under another name
    engine.images.get(BASE_IMAGE).tag(*override.split(":"))
    spec = dataclasses.replace(
        python_spec("runner_echo", version="8.1.0"),
        digest=secrets.token_hex(32),
        base_images={"cpu": override},
    )
    lines = []
    try:
        runner.build(spec, lines.append)
        tag = environment_tag(runner.env_key(spec), override)  # another base: its own environment image
        assert f"Building environment image {tag} FROM {override} (manifest base_image for cpu)" in lines
        built = engine.images.list(filters={"label": f"aidhub.digest={spec.digest}"})
        assert [image.labels["aidhub.base"] for image in built if image.tags] == [override]
        assert any(f"FROM {override}" in line for line in lines if "STEP" in line), lines
    finally:
        for image in engine.images.list(filters={"label": f"aidhub.digest={spec.digest}"}):
            engine.images.remove(image.id, force=True)
        for image in engine.images.list(filters={"label": f"aidhub.base={override}"}):
            engine.images.remove(image.id, force=True)  # the environment image grown from it
        engine.images.remove(override)  # the tag only: aidhub/base:py3.11 stays


def test_refused_gpu_version_leaves_no_build_context(runner):
    spec = dataclasses.replace(python_spec("runner_echo", version="3.0.1", name="runner-gpu"), gpu="2")
    with pytest.raises(RunnerError, match="requires 2 GPU"):
        runner.build(spec, lambda line: None)
    contexts = Path(runner.contexts_dir)
    assert not contexts.exists() or [p for p in contexts.iterdir() if not p.name.startswith(".")] == []


WEIGHT_MIB = 16  # under WEIGHTS_IMAGE_MIN_BYTES: the weights stay a layer of the version image


def _store_copy(folder: Path, version: str, weights: Path, predict_note: str) -> Path:
    """runner_echo laid out as the hub's store does (files 0444), with `weights` hard-linked in."""
    import os
    import shutil

    package = folder / version
    shutil.copytree(Path(__file__).parent / "fixtures" / "runner_echo", package)
    (package / "predict.py").write_text((package / "predict.py").read_text() + f"# {predict_note}\n")
    (package / "data").mkdir()
    os.link(weights, package / "data" / "weights bin")  # a space: it never reaches the Dockerfile
    for path in package.rglob("*"):
        path.chmod(0o444 if path.is_file() else 0o755)
    return package


@pytest.mark.slow
def test_versions_with_the_same_weights_share_the_weights_layer(runner, engine, tmp_path):
    weights = tmp_path / "weights.bin"
    with open(weights, "wb") as handle:
        for _ in range(WEIGHT_MIB // 8):
            handle.write(secrets.token_bytes(8 * 1024**2))  # new bytes every run: no earlier run's layer
    specs = [
        dataclasses.replace(
            python_spec("runner_echo", version=version),
            digest=secrets.token_hex(32),
            package_dir=_store_copy(tmp_path, version, weights, f"predict.py of {version}"),
        )  # fmt: skip
        for version in ("9.0.0", "9.1.0")
    ]
    try:
        runner.build(specs[0], lambda line: None)
        lines, began = [], time.monotonic()
        runner.build(specs[1], lines.append)
        print(f"second version's build: {time.monotonic() - began:.1f} s")
        step = next(i for i, line in enumerate(lines) if "COPY weights/ /app/model/" in line)
        assert "Using cache" in lines[step + 1], lines[step : step + 3]
        assert "Using cache" not in lines[step + 3], lines[step : step + 5]  # COPY model/: a new predict.py
        (weights_1, model_1), (weights_2, model_2) = (_model_layers(engine, image_tag(s)) for s in specs)
        assert weights_1 == weights_2 and model_1 != model_2
    finally:
        for spec in specs:
            for image in engine.images.list(filters={"label": f"aidhub.digest={spec.digest}"}):
                engine.images.remove(image.id, force=True)


def _model_layers(engine, tag: str) -> list[str]:
    """Digests of the layers that the `COPY ... /app/model/` steps made in image `tag`: the
    weights' (COPY weights/), then the other files' (COPY model/)."""
    image = engine.images.get(tag)
    made = [h for h in reversed(engine.api.history(image.id)) if h["Size"]]  # the steps that made a layer
    layers = image.attrs["RootFS"]["Layers"]
    assert len(made) == len(layers), (made, layers)
    return [
        layer
        for h, layer in zip(made, layers, strict=True)
        if h["CreatedBy"].rstrip().endswith(" /app/model/")
    ]
