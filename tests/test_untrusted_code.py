"""Untrusted code runs only where it is confined (issue 10, item 4).

- The host takes binary wheels only: a source package's setup.py never runs here. The probe is a
  real source archive, served from a find-links folder, whose setup.py creates a file when it runs.
- A requirement with no wheel: the process runner refuses it, naming it; the container runner
  fetches its source as data and builds it inside the build container.
- The process runner's servers get a scrubbed environment.
- Pickled artifacts are never opened in the hub process.
"""

from __future__ import annotations

import ast
import io
import json
import os
import pickle
import tarfile
from pathlib import Path

import httpx
import pytest
import yaml

from runners import RunnerError, ServeSpec, make_runner
from runners.environment import NoWheel, _pip_download_command, combined_requirements, fill_wheelhouse
from runners.sources import SourceInfo, find_source, read_source, write_placeholder
from tests.conftest import BASE_IMAGE
from tests.packages import archive

REPO = Path(__file__).resolve().parent.parent
CACHE = REPO / ".cache"
PROBE_REQ = "aidhub-probe==1.0"
NO_WHEEL = (
    "requirement 'aidhub-probe==1.0' has no binary wheel for CPython 3.11 on linux x86_64; the "
    "process runner does not build source packages on the host. Use a version with a wheel, or the "
    "container runner, which builds it inside a build container."
)
SETUP_PY = """import os
from setuptools import setup

MARKER = {marker!r}
try:  # inside a build container the folder does not exist: make it, so the build goes on
    os.makedirs(os.path.dirname(MARKER), exist_ok=True)
    with open(MARKER, "w") as f:
        f.write("setup.py ran here")
except OSError:
    pass
setup(name="aidhub-probe", version="1.0", py_modules=["aidhub_probe"])
"""


PKG_INFO = "Metadata-Version: 2.1\nName: aidhub-probe\nVersion: 1.0\nRequires-Dist: six\n"


def _tar(files: dict[str, str]) -> bytes:
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w:gz") as tar:
        for name, text in files.items():
            data = text.encode()
            info = tarfile.TarInfo(name)
            info.size, info.mode = len(data), 0o644
            tar.addfile(info, io.BytesIO(data))
    return buffer.getvalue()


@pytest.fixture
def probe(tmp_path, monkeypatch) -> Path:
    """A source-only package `aidhub-probe` 1.0 on pip's find-links; its setup.py, when run, creates
    the returned path. Its module says VALUE = 7."""
    marker = tmp_path / "setup-py-ran" / "marker"
    index = tmp_path / "find-links"
    index.mkdir()
    (index / "aidhub_probe-1.0.tar.gz").write_bytes(
        _tar({
            "aidhub_probe-1.0/PKG-INFO": PKG_INFO,
            "aidhub_probe-1.0/setup.py": SETUP_PY.format(marker=str(marker)),
            "aidhub_probe-1.0/aidhub_probe.py": "VALUE = 7\n",
        })
    )  # fmt: skip
    monkeypatch.setenv("PIP_FIND_LINKS", f"{os.environ.get('PIP_FIND_LINKS', '')} {index}".strip())
    return marker


@pytest.fixture
def wheelhouse(tmp_path) -> Path:
    """A wheelhouse of this test's own, seeded by hard links from the shared one (nothing the test
    fetches lands in the shared cache)."""
    folder = tmp_path / "wheelhouse"
    folder.mkdir()
    for wheel in (CACHE / "wheelhouse").glob("*.whl"):
        os.link(wheel, folder / wheel.name)
    return folder


def probe_spec(folder: Path, version: str = "1.0.0") -> ServeSpec:
    """A python-flavor version that imports the probe (and reports its environment)."""
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "predict.py").write_text(
        "import os\n\n\nclass Model:\n    def setup(self):\n        pass\n\n"
        "    def predict(self, x):\n"
        "        import json\n\n"
        "        try:\n            import aidhub_probe\n            value = aidhub_probe.VALUE\n"
        "        except ImportError:\n            value = -1\n"
        "        return {'value': value, 'env': json.dumps(dict(os.environ))}\n"
    )
    return ServeSpec(
        name="untrusted-probe", version=version, digest="0" * 64, package_dir=folder, framework="python",
        artifact=None, entrypoint="predict.py:Model", inputs={"x": {"dtype": "float64", "shape": [-1]}},
        outputs={"value": {}, "env": {}}, requirements=(PROBE_REQ,),
    )  # fmt: skip


# --- the host takes wheels only ------------------------------------------------------------


@pytest.mark.parametrize("python", ["3.11", "3.12"])
def test_pip_download_on_the_host_takes_binary_wheels_only(python, tmp_path):
    assert "--only-binary=:all:" in _pip_download_command(tmp_path, ["numpy"], python)


@pytest.mark.parametrize("requirement", ["./probe", "/tmp/probe-1.0", "probe @ https://example.org/p.tgz"])
def test_a_path_or_url_requirement_is_refused_before_pip_sees_it(requirement):
    """pip builds a local folder or a URL's source even with --only-binary=:all: (checked)."""
    with pytest.raises(RunnerError, match="is not a plain requirement"):
        combined_requirements("python", [requirement])


def test_a_requirement_without_a_wheel_is_refused_naming_it_and_its_setup_py_never_runs(probe, tmp_path):
    lines = []
    with pytest.raises(NoWheel) as caught:
        fill_wheelhouse(tmp_path / "wheels", [PROBE_REQ], lines.append, "3.11")
    assert str(caught.value) == NO_WHEEL and caught.value.requirement == PROBE_REQ
    assert NO_WHEEL in lines
    assert not probe.exists()
    assert not list((tmp_path / "wheels").glob(".wheels-only-*"))  # nothing recorded as filled


def test_for_containers_the_source_is_fetched_as_data_and_remembered(probe, tmp_path):
    wheels, lines = tmp_path / "wheels", []
    sources = fill_wheelhouse(wheels, [PROBE_REQ], lines.append, "3.11", sources=True)
    assert sources == [wheels / "sources" / "aidhub_probe-1.0.tar.gz"]
    assert read_source(sources[0]).build_requires == ("setuptools>=40.8.0", "wheel")
    assert list(wheels.glob("setuptools-*.whl")) and list(wheels.glob("wheel-*.whl"))  # to build it with
    assert not list(wheels.glob("aidhub_probe*.whl"))  # the placeholder pip resolved with is gone
    assert not probe.exists()
    # the process runner asking for the same set later is refused, from what was remembered
    with pytest.raises(NoWheel, match="aidhub-probe==1.0"):
        fill_wheelhouse(wheels, [PROBE_REQ], lambda line: None, "3.11")
    assert not probe.exists()


def test_a_dependency_without_a_wheel_is_found_behind_one_with_a_wheel(probe, tmp_path):
    """`aidhub-parent` (a wheel) needs the source-only probe, which needs six (a wheel)."""
    parent = SourceInfo("aidhub-parent", "1.0", ("aidhub-probe>=1",), "", (), (), ())
    write_placeholder(parent, Path(os.environ["PIP_FIND_LINKS"].split()[-1]))
    wheels, lines = tmp_path / "wheels", []
    sources = fill_wheelhouse(wheels, ["aidhub-parent==1.0"], lines.append, "3.11", sources=True)
    assert sources == [wheels / "sources" / "aidhub_probe-1.0.tar.gz"]
    assert "No wheel for 'aidhub-probe>=1': fetching its source archive aidhub_probe-1.0.tar.gz" in " ".join(
        lines
    )
    assert list(wheels.glob("six-*.whl")) and list(wheels.glob("aidhub_parent-1.0-*.whl"))
    assert not list(wheels.glob("aidhub_probe*.whl"))
    assert not probe.exists()


def test_a_real_source_only_package_is_found_on_pypi_with_its_hash(tmp_path):
    source = find_source("docopt==0.6.2", "3.11")  # docopt 0.6.2 has no wheel on PyPI
    assert source is not None and source.filename == "docopt-0.6.2.tar.gz" and len(source.sha256) == 64


def test_process_runner_refuses_the_build_in_its_log_and_says_it_does_not_isolate(
    probe, wheelhouse, tmp_path
):
    runner = make_runner(
        "process", envs_dir=tmp_path / "envs", wheelhouse=wheelhouse, deployments_dir=tmp_path / "d",
        uv_cache=CACHE / "uv",
    )  # fmt: skip
    lines = []
    with pytest.raises(NoWheel) as caught:
        runner.build(probe_spec(tmp_path / "pkg"), lines.append)
    assert str(caught.value) == NO_WHEEL
    assert NO_WHEEL in lines
    assert lines[0].startswith("NOTE: the process runner does not isolate the model from this host")
    assert not probe.exists()
    assert not (tmp_path / "envs").exists() or not any((tmp_path / "envs").iterdir())


@pytest.mark.slow
def test_container_runner_builds_the_source_inside_the_build_container(
    probe, wheelhouse, engine, docker_host, tmp_path
):
    runner = make_runner(
        "container", docker_host=docker_host, wheelhouse=wheelhouse, contexts_dir=tmp_path / "ctx",
        base_image=BASE_IMAGE, ready_timeout=90.0, owner=f"tests-{tmp_path.name}",
    )  # fmt: skip
    spec = probe_spec(tmp_path / "pkg")
    built = [f"aidhub.model={spec.name}", f"aidhub.env={runner.env_key(spec)}"]  # a run before left them?
    remove_images(engine, built)  # else the version builds FROM its environment image: nothing to build
    lines = []
    try:
        instance = runner.start(spec, lines.append)
        reply = httpx.post(f"{instance.url}/predict", json={"inputs": {"x": [1.0]}}, timeout=30)
        assert reply.json()["value"] == 7  # built from its source, installed in the image
    finally:
        for instance in runner.instances():
            runner.stop(instance)
        runner.close()
        remove_images(engine, built)
    assert any("aidhub_probe-1.0.tar.gz" in line and "inside the build container" in line for line in lines)
    assert not probe.exists()  # its setup.py ran in the build container only


def remove_images(engine, labels: list[str]) -> None:
    for label in labels:
        for image in engine.images.list(filters={"label": label}):
            engine.images.remove(image.id, force=True)


def test_a_hub_build_of_a_source_only_requirement_fails_naming_it(probe, open_hub, tmp_path):
    """Through the hub (process runner): the build fails, its log and the deployment's error say why."""
    from tests.packages import python_package

    package = python_package(tmp_path / "pkg", "source-only")
    manifest = yaml.safe_load((package / "aid.yaml").read_text())
    (package / "aid.yaml").write_text(yaml.safe_dump({**manifest, "requirements": [PROBE_REQ]}))
    hub = open_hub(tmp_path / "home", f"sqlite:///{tmp_path}/hub.db")
    try:
        hub.publish(archive(package))
        build = hub.deploy("source-only")["build"]
        hub.deployments.wait(build["id"])
        done = hub.build(build["id"])
        deployment = hub.model("source-only")["versions"][0]["deployment"]
    finally:
        hub.close()
    assert done["status"] == "failed"
    assert f"failed: {NO_WHEEL}" in done["log"]
    assert "NOTE: the process runner does not isolate the model from this host" in done["log"]
    assert deployment["status"] == "failed" and deployment["error"].startswith(NO_WHEEL)
    assert not probe.exists()


# --- the process runner's servers get a scrubbed environment ---------------------------------

SECRETS = {
    "AIDHUB_DATABASE_URL": "postgresql://hub:s3cret@db/hub",
    "AIDHUB_ADMIN_TOKEN": "aid_admin_secret",
    "AIDHUB_QUEUE_URL": "redis://:pw@localhost/0",
    "DATABASE_URL": "postgresql://app:pw@db/app",
    "GITHUB_TOKEN": "ghp_secret",
    "AWS_SECRET_ACCESS_KEY": "aws-secret",
    "HTTPS_PROXY": "http://user:pw@proxy:3128",
}


@pytest.mark.slow
def test_process_runner_starts_servers_with_a_scrubbed_environment(tmp_path, monkeypatch):
    for name, value in SECRETS.items():
        monkeypatch.setenv(name, value)
    runner = make_runner(
        "process", envs_dir=CACHE / "envs", wheelhouse=CACHE / "wheelhouse",
        deployments_dir=tmp_path / "d", uv_cache=CACHE / "uv", ready_timeout=90.0,
    )  # fmt: skip
    spec = probe_spec(tmp_path / "pkg")
    spec = ServeSpec(**{**spec.__dict__, "requirements": (), "env": {
        "AIDHUB_REPORT_TOKEN": "meant-for-the-server", "AIDHUB_LOG_PAYLOAD_BYTES": "100"}})  # fmt: skip
    instance = runner.start(spec, lambda line: None)
    try:
        reply = httpx.post(f"{instance.url}/predict", json={"inputs": {"x": [1.0]}}, timeout=30)
        env = json.loads(reply.json()["env"])
    finally:
        runner.stop(instance)
    assert not set(SECRETS) & set(env), env
    assert not any(value in env.values() for value in SECRETS.values())
    assert {k for k in env if k.startswith("AIDHUB_")} == set(spec.env)
    assert env["AIDHUB_REPORT_TOKEN"] == "meant-for-the-server"
    assert env["HOME"] == str(tmp_path / "d" / spec.key / "home") and env["PATH"] == os.environ["PATH"]


# --- pickled artifacts are never opened in the hub process ----------------------------------


class _Tripwire:
    """Unpickling this creates `path`: what a hostile joblib or torch file would do, harmlessly."""

    def __init__(self, path: Path):
        self.path = str(path)

    def __reduce__(self):
        return (open, (self.path, "w"))


def _pickled_package(root: Path, framework: str, marker: Path) -> Path:
    artifact = {"sklearn": "model.joblib", "torch": "model.pt"}[framework]
    root.mkdir(parents=True)
    (root / artifact).write_bytes(pickle.dumps(_Tripwire(marker)))
    manifest = {
        "name": f"pickled-{framework}", "version": "1.0.0", "task": "regression",
        "summary": "An artifact that creates a file when unpickled", "framework": framework,
        "artifact": artifact, "inputs": {"x": {"dtype": "float64", "shape": [-1, 2]}},
        "outputs": {"y": {"dtype": "float64", "shape": [-1]}},
    }  # fmt: skip
    (root / "aid.yaml").write_text(yaml.safe_dump(manifest, sort_keys=False))
    (root / "README.md").write_text("# pickled\n\nA tripwire.\n")
    return root


@pytest.mark.parametrize("framework", ["sklearn", "torch"])
def test_pickled_artifacts_are_never_opened_in_the_hub_process(framework, open_hub, tmp_path):
    from registry.package import validate_package

    marker = tmp_path / "unpickled"
    pickle.loads(pickle.dumps(_Tripwire(marker)))  # the tripwire works...
    assert marker.exists()
    marker.unlink()
    package = _pickled_package(tmp_path / "pkg", framework, marker)
    validate_package(package)
    hub = open_hub(tmp_path / "home", f"sqlite:///{tmp_path}/hub.db")
    try:
        assert hub.publish(archive(package))["created"]
        hub.model(f"pickled-{framework}")
        hub.version_files(f"pickled-{framework}", "1.0.0")
    finally:
        hub.close()
    assert not marker.exists()  # ...and nothing in the hub process unpickled the artifact


UNPICKLERS = {
    ("pickle", "load"), ("pickle", "loads"), ("joblib", "load"), ("torch", "load"), ("dill", "load"),
    ("cloudpickle", "load"), ("cloudpickle", "loads"), ("skops", "load"),
}  # fmt: skip


def test_no_hub_side_package_calls_an_unpickler():
    """The packages that run in the hub's processes never name pickle/joblib/torch loaders."""
    found = []
    for package in ("hub", "registry", "web", "monitor", "database", "vocab"):
        for path in (REPO / package).rglob("*.py"):
            for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
                if isinstance(node, ast.Attribute) and isinstance(node.value, ast.Name):
                    if (node.value.id, node.attr) in UNPICKLERS:
                        found.append(f"{path.relative_to(REPO)}:{node.lineno} {node.value.id}.{node.attr}")
                if isinstance(node, ast.ImportFrom) and node.module in ("pickle", "joblib", "torch"):
                    found.append(f"{path.relative_to(REPO)}:{node.lineno} from {node.module} import")
    assert found == []
