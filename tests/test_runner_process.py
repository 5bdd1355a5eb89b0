"""The Runner contract against real environments, real BentoML servers and real HTTP.

Caches shared by every run on a machine: wheels in <repo>/.cache/wheelhouse, uv's cache in
<repo>/.cache/uv. Environments are built in a per-session temp dir, so each run proves that an
environment builds offline from the wheelhouse.
"""

from __future__ import annotations

import ast
import json
import socket
import time
from pathlib import Path

import httpx
import pytest

from runners import RunnerError, ServeSpec, make_runner, process
from runners.environment import (
    combined_requirements,
    ensure_environment,
    environment_key,
    fill_wheelhouse,
    runtime_requirements,
)
from runners.service import SERVICE_CLASS, render_service
from tests.conftest import BASE_IMAGE
from tests.fixtures.runner_onnx import EXPECTED, INPUTS, build_multi_io_model
from tests.postgres import _free_port

REPO = Path(__file__).resolve().parent.parent
WHEELHOUSE = REPO / ".cache" / "wheelhouse"
UV_CACHE = REPO / ".cache" / "uv"
FIXTURES = Path(__file__).parent / "fixtures"
ECHO_INPUTS = {"text": {"dtype": "string", "shape": []}, "values": {"dtype": "float64"}}
ECHO_OUTPUTS = {"upper": {}, "total": {}, "setup_calls": {}}


def python_spec(folder: str, version: str = "1.0.0", name: str = "runner-echo") -> ServeSpec:
    return ServeSpec(
        name=name,
        version=version,
        digest="0" * 64,
        package_dir=FIXTURES / folder,
        framework="python",
        artifact=None,
        entrypoint="predict.py:Model",
        inputs=ECHO_INPUTS,
        outputs=ECHO_OUTPUTS,
    )


@pytest.fixture(scope="session")
def envs_dir(tmp_path_factory) -> Path:
    return tmp_path_factory.mktemp("runner-envs")


def process_options(request, envs: Path, tmp_path: Path) -> dict:
    """make_runner("process", ...) options with the shared caches."""
    return dict(envs_dir=envs, wheelhouse=WHEELHOUSE, deployments_dir=tmp_path / "deployments",
                uv_cache=UV_CACHE, ready_timeout=90.0)  # fmt: skip


def container_options(request, envs: Path, tmp_path: Path) -> dict:
    """make_runner("container", ...) options; `owner` keeps this test's containers apart in the engine."""
    request.getfixturevalue("engine")  # fails the test when no engine answers
    return dict(docker_host=request.getfixturevalue("docker_host"), wheelhouse=WHEELHOUSE,
                contexts_dir=tmp_path / "contexts", base_image=BASE_IMAGE, ready_timeout=90.0,
                owner=f"tests-{tmp_path.name}")  # fmt: skip


@pytest.fixture(
    params=[("process", process_options), ("container", container_options)], ids=["process", "container"]
)
def new_runner(request, envs_dir, tmp_path):
    """Makes backends of one kind (every kind runs the same tests); each new one is like a hub
    restart. The instances that still exist at teardown are stopped."""
    kind, options = request.param
    made = []

    def new(envs: Path = envs_dir):
        made.append(make_runner(kind, **options(request, envs, tmp_path)))
        return made[-1]

    yield new
    for backend in made:
        for instance in backend.instances():
            backend.stop(instance)
        backend.close()


@pytest.fixture
def runner(new_runner):
    return new_runner()


@pytest.fixture(scope="session")
def onnx_package(tmp_path_factory) -> Path:
    folder = tmp_path_factory.mktemp("multi-io")
    build_multi_io_model(folder / "model.onnx")
    return folder


def predict(instance, inputs: dict) -> httpx.Response:
    return httpx.post(f"{instance.url}/predict", json={"inputs": inputs}, timeout=30)


@pytest.mark.slow
class TestRunnerContract:
    def test_onnx_model_with_many_inputs_and_outputs_answers_exactly(self, runner, onnx_package):
        spec = ServeSpec("multi-io", "1.0.0", "a" * 64, onnx_package, "onnx", "model.onnx", None,
                         {}, {})  # fmt: skip
        instance = runner.start(spec, lambda line: None)
        reply = predict(instance, INPUTS)
        assert (reply.status_code, reply.json()) == (200, EXPECTED)
        assert reply.headers["content-type"] == "application/json"

    def test_onnx_bad_input_is_422_naming_the_input(self, runner, onnx_package):
        spec = ServeSpec("multi-io", "1.0.1", "a" * 64, onnx_package, "onnx", "model.onnx", None,
                         {}, {})  # fmt: skip
        instance = runner.start(spec, lambda line: None)
        reply = predict(instance, {**INPUTS, "features": [[1.0]]})
        assert reply.status_code == 422
        assert reply.json() == {"error": "Input 'features' must have shape [-1, 3], got [1, 1]."}

    def test_python_model_runs_setup_once_and_predicts(self, runner):
        instance = runner.start(python_spec("runner_echo"), lambda line: None)
        predict(instance, {"text": "first", "values": []})
        reply = predict(instance, {"text": "héllo", "values": [1, 2.5]})
        assert reply.json() == {"upper": "HÉLLO", "total": 3.5, "setup_calls": 1}
        assert httpx.get(f"{instance.url}/livez").status_code == 200

    def test_setup_failure_raises_with_the_exception_in_the_log_tail(self, runner):
        spec = python_spec("runner_setup_fails", name="runner-setup-fails")
        with pytest.raises(RunnerError) as caught:
            runner.start(spec, lambda line: None)
        assert "weights.bin is corrupt (runner-setup-fails fixture)" in caught.value.log_tail
        message = str(caught.value)
        assert message.startswith(
            "Model 'runner-setup-fails' version '1.0.0' did not start: loading the model raised"
        )
        assert "fix the package" in message

    def test_stop_then_start_again(self, runner):
        spec = python_spec("runner_echo", version="1.1.0")
        first = runner.start(spec, lambda line: None)
        runner.stop(first)
        assert not runner.alive(first)
        runner.stop(first)  # idempotent
        second = runner.start(spec, lambda line: None)
        assert runner.alive(second)
        assert predict(second, {"text": "again", "values": [2]}).json()["upper"] == "AGAIN"

    def test_stop_ends_every_server_process_and_frees_the_port(self, runner):
        instance = runner.start(python_spec("runner_echo", version="1.2.0"), lambda line: None)
        runner.stop(instance)
        assert not runner.alive(instance)
        with pytest.raises(httpx.ConnectError):
            httpx.get(f"{instance.url}/livez", timeout=2)
        assert _leftovers(runner, instance) == []

    def test_a_new_runner_stops_an_instance_from_its_pid(self, runner, new_runner):
        instance = runner.start(python_spec("runner_echo", version="1.3.0"), lambda line: None)
        after_restart = new_runner()
        assert after_restart.alive(instance)
        after_restart.stop(instance)
        assert not after_restart.alive(instance)
        assert _leftovers(after_restart, instance) == []


@pytest.mark.slow
def test_a_port_taken_before_the_server_binds_it_is_left_for_another(request, tmp_path, monkeypatch):
    """The free port is found before the server starts; something may take it meanwhile."""
    taken = socket.socket()
    taken.bind(("127.0.0.1", 0))
    taken.listen()
    ports = iter([taken.getsockname()[1]])
    monkeypatch.setattr(process, "_free_port", lambda host: next(ports, None) or _free_port())
    runner = make_runner("process", **process_options(request, request.getfixturevalue("envs_dir"), tmp_path))
    lines = []
    try:
        instance = runner.start(python_spec("runner_echo", version="1.4.0"), lines.append)
        assert instance.port != taken.getsockname()[1]
        assert predict(instance, {"text": "moved", "values": [1]}).json()["upper"] == "MOVED"
        assert f"port {taken.getsockname()[1]} was taken before the server bound it; trying another" in lines
        runner.stop(instance)
    finally:
        taken.close()
        runner.close()


def test_process_versions_with_the_same_requirements_share_one_environment(request, tmp_path):
    """The container runner's counterpart (image layer reuse) is in test_runner_container.py."""
    fresh_envs = tmp_path / "fresh-envs"  # a first build really happens here
    runner = make_runner("process", **process_options(request, fresh_envs, tmp_path))
    began = time.monotonic()
    first_key = runner.build(python_spec("runner_echo", version="2.0.0"), lambda line: None)
    first_build_s = time.monotonic() - began
    began = time.monotonic()
    second = runner.start(python_spec("runner_echo", version="2.1.0"), lambda line: None)
    second_start_s = time.monotonic() - began
    try:
        assert second.env_key == first_key
        assert sorted(p.name for p in runner.envs_dir.iterdir() if not p.name.startswith(".")) == [first_key]
        assert second_start_s < first_build_s, (second_start_s, first_build_s)
    finally:
        runner.stop(second)


def _leftovers(runner, instance) -> list:
    """What still exists of a stopped instance: its server processes or containers."""
    return [found for found in runner.instances() if found.key == instance.key]


HOSTILE = 'x"""\'\'\'\nimport os; os.system("echo pwned")  # \\ \x00 {inputs}'


def hostile_spec() -> ServeSpec:
    return ServeSpec(
        name=HOSTILE,
        version=HOSTILE,
        digest=HOSTILE,
        package_dir=Path("/tmp") / HOSTILE,
        framework="python",
        artifact=HOSTILE,
        entrypoint=HOSTILE,
        inputs={HOSTILE: {"dtype": HOSTILE, "shape": [-1]}},
        outputs={HOSTILE: {}},
        gpu=HOSTILE,
    )


def _assigned_literals(source: str) -> dict:
    tree = ast.parse(source)
    found = {}
    for node in tree.body:
        if isinstance(node, ast.Assign) and isinstance(node.value, ast.Call) and node.value.args:
            found[node.targets[0].id] = json.loads(ast.literal_eval(node.value.args[0]))
    return found


def test_render_service_with_hostile_values_compiles_and_round_trips():
    source = render_service(hostile_spec())
    compile(source, "service.py", "exec")
    literals = _assigned_literals(source)
    assert literals["MODEL"] == {"name": HOSTILE, "version": HOSTILE, "digest": HOSTILE}
    assert literals["LOAD_ARGS"]["package_dir"] == f"/tmp/{HOSTILE}"
    assert literals["LOAD_ARGS"]["entrypoint"] == HOSTILE
    assert literals["LOAD_ARGS"]["inputs"] == {HOSTILE: {"dtype": HOSTILE, "shape": [-1]}}
    assert literals["LOAD_ARGS"]["device"] == "cuda"


def test_render_service_hostile_values_add_no_statements():
    plain = python_spec("runner_echo")
    shape = [type(n).__name__ for n in ast.parse(render_service(plain)).body]
    assert [type(n).__name__ for n in ast.parse(render_service(hostile_spec())).body] == shape
    assert "os.system" not in render_service(hostile_spec()).replace("\\", "").split("json.loads")[0]


def test_render_service_declares_the_service_and_route():
    source = render_service(python_spec("runner_echo"), workers=2)
    assert f"class {SERVICE_CLASS}:" in source
    assert "@bentoml.api(route='/predict')" in source
    assert "    workers=2,\n" in source
    assert "serving.install_fixes()" in source


def test_render_service_is_pure():
    spec = python_spec("runner_echo")
    assert render_service(spec) == render_service(spec)


@pytest.mark.parametrize(
    ("gpu", "device"), [("0", "cpu"), ("optional", "auto"), ("1", "cuda"), ("2", "cuda")]
)
def test_render_service_maps_gpu_to_device(gpu, device):
    spec = ServeSpec("m", "1.0.0", "0", Path("/p"), "onnx", "m.onnx", None, {}, {}, gpu=gpu)
    assert _assigned_literals(render_service(spec))["LOAD_ARGS"]["device"] == device


def test_environment_key_is_stable_and_ignores_requirement_order():
    key = environment_key("3.11", "onnx", ["numpy>=1.26", "bentoml>=1.4.30,<1.5"], "0")
    assert key == environment_key("3.11", "onnx", ["bentoml>=1.4.30,<1.5", "numpy>=1.26"], "0")
    assert key == environment_key("3.11", "onnx", [" numpy>=1.26", "bentoml>=1.4.30,<1.5"], 0)
    assert len(key) == 16 and int(key, 16) >= 0
    assert key == "dab870b370291e7b"  # changing it orphans every built environment


@pytest.mark.parametrize(
    "changed",
    [
        ("3.12", "onnx", ["numpy>=1.26", "bentoml>=1.4.30,<1.5"], "0"),
        ("3.11", "torch", ["numpy>=1.26", "bentoml>=1.4.30,<1.5"], "0"),
        ("3.11", "onnx", ["numpy>=1.27", "bentoml>=1.4.30,<1.5"], "0"),
        ("3.11", "onnx", ["numpy>=1.26", "bentoml>=1.4.30,<1.5"], "1"),
    ],
)
def test_environment_key_changes_with_each_part(changed):
    base = environment_key("3.11", "onnx", ["numpy>=1.26", "bentoml>=1.4.30,<1.5"], "0")
    assert environment_key(*changed) != base


def test_runtime_requirements_per_framework():
    assert runtime_requirements("onnx") == [
        "bentoml>=1.4.30,<1.5", "uvloop>=0.19", "httptools>=0.6", "numpy>=1.26,<3",
        "onnxruntime>=1.20,<2",
    ]  # fmt: skip
    assert runtime_requirements("torch")[-1] == "torch==2.13.0"
    assert runtime_requirements("sklearn")[-2:] == ["scikit-learn>=1.5,<2", "joblib"]
    assert runtime_requirements("onnx", gpu=True)[-1] == "onnxruntime-gpu>=1.20,<2"


def test_runtime_requirements_unknown_framework():
    with pytest.raises(RunnerError, match="Framework 'tf' has no runtime; use one of onnx, torch"):
        runtime_requirements("tf")


def test_requirement_that_looks_like_an_option_is_refused():
    with pytest.raises(RunnerError, match="Requirement '--index-url=http://evil' looks like"):
        combined_requirements("python", ["--index-url=http://evil"])


def test_make_runner_unknown_kind():
    with pytest.raises(
        RunnerError, match="Runner kind 'k8s' is not available; use one of process, container"
    ):
        make_runner("k8s")


@pytest.mark.slow
def test_half_built_environment_is_wiped_and_rebuilt(tmp_path):
    reqs = ["numpy>=1.26,<3"]
    fill_wheelhouse(WHEELHOUSE, reqs, lambda line: None)
    half_built = tmp_path / "k1"
    half_built.mkdir()
    (half_built / "leftover").write_text("from a killed build")
    lines = []
    env = ensure_environment(tmp_path, "k1", WHEELHOUSE, reqs, "3.11", lines.append, UV_CACHE)
    assert (env / ".ready").exists() and not (env / "leftover").exists()
    assert f"Removing half-built environment {half_built}" in lines
    assert list(env.glob("lib/python3.11/site-packages/numpy/__init__.py"))
    lines.clear()
    assert ensure_environment(tmp_path, "k1", WHEELHOUSE, reqs, "3.11", lines.append) == env
    assert lines == []
