"""The container runner, measured.

`run` (`python -m benchmarks containers`): cold build to ready, warm build to ready, image size against
its base, and container-served vs process-served throughput of the same version. Cold: the container
hub gets a new, empty wheelhouse (so `pip download` fetches every requirement again, with pip's own
cache off) and every image layer of the example's environment is removed first: the images labelled
`aidhub.env=<key>` (its environment image among them), the layers below them down to the base image,
and the dependency stage's layers (their history names `requirements-<key>.txt`), with everything
built on them. The runtime base (aidhub/base:py3.11, scripts/base-image.sh) stays. Warm: a new
version with the same requirements on the same hub. Both builds' logs are read back to check that
the cold one installed the dependencies and the warm one was built FROM the environment image.

`run_versions` (`python -m benchmarks versions`, about 1.5 minutes): publish to ready of a new
version with unchanged requirements, for a scikit-learn random forest and the ONNX iris example, on
a hub with the test caches and on a fresh hub home with an empty wheelhouse.
"""

from __future__ import annotations

import contextlib
import os
import re
import secrets
import shutil
import tempfile
import time
from pathlib import Path

import docker
import httpx
import yaml

from benchmarks.load import UNLIMITED, post_load
from benchmarks.serving import SECONDS, row
from runners.environment import combined_requirements, environment_key
from tests.hubserver import REPO, HubProcess

MODEL = "iris-onnx"
DOCKER_HOST = os.environ.get("DOCKER_HOST", "unix:///run/aidhub/podman.sock")
BASE_IMAGE = "aidhub/base:py3.11"
INSTALL_STEP = 'RUN ["uv", "pip", "install"'
STEP_RE = re.compile(r"(?:\[\d+/\d+\] )?STEP \d+/\d+: (.*)")  # multi-stage builds number stages
NEW_VERSION_TARGET_S = 10
# the runner's log line for each build path (runners/container.py `_environment_image`)
PATH_LINES = {"fast": "exists: building FROM it", "full": "Building environment image"}
BUILT_RE = re.compile(r"Built image \S+ \(\S+\) in ([0-9.]+) s")
READY_RE = re.compile(r" is ready at \S+ \(([0-9.]+) s after launch\)")  # runners/startup.py


def _version_copy(root: Path, version: str) -> Path:
    """The example under another version number: same requirements, new digest."""
    dest = root / f"{MODEL}-{version}"
    shutil.copytree(REPO / "examples" / MODEL, dest)
    manifest = yaml.safe_load((dest / "aid.yaml").read_text())
    (dest / "aid.yaml").write_text(yaml.safe_dump({**manifest, "version": version}, sort_keys=False))
    return dest


def _deploy_seconds(hub: HubProcess, package: Path) -> float:
    began = time.monotonic()
    result = hub.aid("publish", str(package), "--deploy")
    assert result.returncode == 0, result.stdout + result.stderr
    return time.monotonic() - began


# --- emptying the environment's layer cache -----------------------------------------------


def example_env_key() -> str:
    """The environment key the container runner gives the example (gpu: 0, CPU requirements)."""
    m = yaml.safe_load((REPO / "examples" / MODEL / "aid.yaml").read_text())
    reqs = combined_requirements(m["framework"], m.get("requirements") or [], False)
    return environment_key(m["python"], m["framework"], reqs, str(m["resources"]["gpu"]))


def _env_layers(client, env_key: str) -> set[str]:
    """Ids of every image built for `env_key`: labelled images, the layers between them and the
    base, the dependency stage's layers, and all images built on any of those."""
    images = client.images.list(all=True)
    parents = _parents(images)
    base = client.images.get(BASE_IMAGE).id
    marker = f"requirements-{env_key}.txt"
    found = {i.id for i in images if any(marker in h.get("CreatedBy", "") for h in client.api.history(i.id))}
    for image in images:
        image_id = image.id if image.labels.get("aidhub.env") == env_key else ""
        while image_id and image_id != base:
            found.add(image_id)
            image_id = parents.get(image_id, "")
    return _with_descendants(found, parents)


def _parents(images) -> dict[str, str]:
    """Image id -> parent id, both as 'sha256:<hex>' (Podman gives Parent without the prefix)."""
    return {
        i.id: f"sha256:{p.removeprefix('sha256:')}" if (p := i.attrs.get("Parent")) else "" for i in images
    }


def _with_descendants(ids: set[str], parents: dict[str, str]) -> set[str]:
    found, grew = set(ids), True
    while grew:
        more = {i for i, parent in parents.items() if parent in found} - found
        found, grew = found | more, bool(more)
    return found


def remove_env_layers(client, env_key: str) -> int:
    """Remove the images of `_env_layers`, children first; how many there were. Never forced: an
    image a container still uses stops the benchmark, with the image named."""
    doomed = _env_layers(client, env_key)
    parents = _parents(client.images.list(all=True))
    count = len(doomed)
    while doomed:
        leaves = {i for i in doomed if not any(parents.get(j) == i for j in doomed)}
        for image_id in leaves:
            try:
                client.images.remove(image_id)
            except docker.errors.NotFound:
                pass  # removed with a child, as a dangling parent
            except docker.errors.APIError as e:
                raise RuntimeError(
                    f"Could not remove image {image_id[:19]} of environment {env_key} ({e}); stop the "
                    "containers that use it and run the benchmark again."
                ) from e
        doomed -= leaves
    if left := _env_layers(client, env_key):
        raise RuntimeError(f"Environment {env_key} still has images after removal: {sorted(left)}")
    return count


# --- reading a build back -------------------------------------------------------------------


def _build_log(hub: HubProcess, version: str) -> str:
    reply = httpx.get(f"{hub.url}/api/v1/models/{MODEL}@{version}/logs", timeout=10).json()
    log = reply["build"]["log"]
    assert "Building image" in log, f"{MODEL} {version} was not built (an image existed):\n{log}"
    return log


def build_steps(log: str) -> list[tuple[str, bool]]:
    """Each non-FROM step of a Podman build log, in order, and whether it came from the layer cache."""
    lines = log.splitlines()
    steps = []
    for i, line in enumerate(lines):
        match = STEP_RE.match(line)
        if match and not match.group(1).startswith("FROM "):
            steps.append((match.group(1), i + 1 < len(lines) and lines[i + 1].startswith("--> Using cache")))
    return steps


def env_steps_cached(steps: list[tuple[str, bool]], env_key: str) -> list[str]:
    """The steps from the environment's own first one (its requirements file) on that were cached."""
    first = next(i for i, (step, _) in enumerate(steps) if f"requirements-{env_key}" in step)
    return [step for step, cached in steps[first:] if cached]


def _installs(steps: list[tuple[str, bool]]) -> bool:
    return any(step.startswith(INSTALL_STEP) for step, _ in steps)


def _engine_seconds(log: str) -> float:
    """The engine's build time, all images of the build (environment and version) together."""
    return sum(float(seconds) for seconds in BUILT_RE.findall(log))


def _image_mb(client, version: str) -> float:
    images = client.images.list(filters={"label": f"aidhub.version={version}"})
    image = next(i for i in images if i.labels.get("aidhub.model") == MODEL)
    return image.attrs["Size"] / 1e6


def _throughput(hub: HubProcess, version: str) -> float:
    url = httpx.get(f"{hub.url}/api/v1/models/{MODEL}/versions/{version}").json()["deployment"]["url"]
    body = {"inputs": {"features": [[5.1, 3.8, 1.6, 0.2]]}}
    post_load(f"{url}/predict", body, 3)
    return post_load(f"{url}/predict", body, SECONDS)["rps"]


def _cache_rows(env_key: str, removed: int, logs: tuple[str, str], wheels: int) -> list[dict]:
    assert f'aidhub.env="{env_key}"' in logs[0], f"the example's environment is not {env_key}"
    cold, warm = build_steps(logs[0]), build_steps(logs[1])
    if cached := env_steps_cached(cold, env_key):  # another build of this environment ran meanwhile
        raise RuntimeError(f"The cold build took {cached} from the layer cache; run it again alone.")
    assert _installs(cold), f"the cold build installed no dependencies:\n{logs[0]}"
    assert PATH_LINES["fast"] in logs[1] and not _installs(warm), (
        f"the warm build was not FROM its environment:\n{logs[1]}"
    )
    hits = " / ".join(f"{sum(c for _, c in steps)}/{len(steps)}" for steps in (cold, warm))
    return [
        row(
            "container: cold build emptied: env images removed / wheels fetched", f"{removed} / {wheels}", ""
        ),
        row("container: build steps from layer cache, cold / warm", hits, "steps"),
        row(
            "container: engine build, cold / warm", " / ".join(f"{_engine_seconds(x):.1f}" for x in logs), "s"
        ),
    ]


def run() -> list[dict]:
    root = Path(tempfile.mkdtemp(prefix="aidhub-bench-containers-"))
    client = docker.DockerClient(base_url=DOCKER_HOST, timeout=300)
    env_key = example_env_key()
    removed = remove_env_layers(client, env_key)
    env = {"DOCKER_HOST": DOCKER_HOST, "AIDHUB_WHEELHOUSE": str(root / "wheelhouse"), "PIP_NO_CACHE_DIR": "1"}
    boxed = HubProcess(root / "container-hub", runner="container", extra_env={**env, **UNLIMITED}).start()
    plain = HubProcess(root / "process-hub", runner="process", extra_env=UNLIMITED).start()
    try:
        cold = _deploy_seconds(boxed, _version_copy(root, "9.0.0"))
        warm = _deploy_seconds(boxed, _version_copy(root, "9.0.1"))
        logs = _build_log(boxed, "9.0.0"), _build_log(boxed, "9.0.1")
        cache_rows = _cache_rows(env_key, removed, logs, len(list((root / "wheelhouse").glob("*.whl"))))
        assert plain.aid("publish", str(_version_copy(root / "process", "9.0.1")), "--deploy").returncode == 0
        container_rps, process_rps = _throughput(boxed, "9.0.1"), _throughput(plain, "9.0.1")
        sizes = _image_mb(client, "9.0.1"), client.images.get(BASE_IMAGE).attrs["Size"] / 1e6
    finally:
        for hub in (boxed, plain):
            hub.undeploy_all()
            hub.stop()
        client.close()
    return [
        row("container: cold (new wheelhouse, env layers removed) publish to ready", cold, "s"),
        row("container: new version, same requirements, to ready", warm, "s", f"<= {NEW_VERSION_TARGET_S}"),
        *cache_rows,
        row("container: ONNX example image / base image", f"{sizes[0]:.0f} / {sizes[1]:.0f}", "MB"),
        row("container-served predict, c=16", container_rps, "req/s"),
        row("process-served predict, c=16", process_rps, "req/s"),
        row("throughput ratio container/process", container_rps / process_rps, ""),
    ]


# --- a new version with unchanged requirements, publish to ready (`python -m benchmarks versions`) ---

FOREST = "forest-sklearn"


def forest_package(root: Path, version: str) -> Path:
    """A scikit-learn random forest on iris as a new user publishes one: joblib file, aid.yaml,
    the training machine's scikit-learn pinned. A nonce file gives every run new digests."""
    import joblib
    import sklearn
    from sklearn.datasets import load_iris
    from sklearn.ensemble import RandomForestClassifier

    dest = root / f"{FOREST}-{version}"
    dest.mkdir(parents=True)
    features, labels = load_iris(return_X_y=True)
    joblib.dump(
        RandomForestClassifier(n_estimators=50, random_state=0).fit(features, labels), dest / "model.joblib"
    )
    manifest = yaml.safe_load((REPO / "examples" / MODEL / "aid.yaml").read_text())
    manifest.update(
        name=FOREST, version=version, framework="sklearn", artifact="model.joblib",
        summary="Iris species (random forest, scikit-learn)",
        requirements=[f"scikit-learn=={sklearn.__version__}"],
    )  # fmt: skip
    for field in ("reference_data", "examples"):
        manifest.pop(field)
    manifest["inputs"]["features"]["dtype"] = "float64"
    manifest["outputs"]["probabilities"]["dtype"] = "float64"
    (dest / "aid.yaml").write_text(yaml.safe_dump(manifest, sort_keys=False))
    (dest / "README.md").write_text(f"# {FOREST}\n\nIris species from four measurements: a random forest.\n")
    (dest / "nonce.txt").write_text(secrets.token_hex(16))
    return dest


def onnx_package(root: Path, version: str) -> Path:
    dest = _version_copy(root, version)
    (dest / "nonce.txt").write_text(secrets.token_hex(16))
    return dest


PACKAGES = {FOREST: forest_package, MODEL: onnx_package}


def _build_facts(hub: HubProcess, model: str, version: str) -> tuple[str, str]:
    """From the version's build log: the path it took (fast, full or, when no line says, ?), and
    the seconds of each build step as 'name s / ...', then the engine's image builds (inside the
    environment step) and the server's launch to ready (inside start)."""
    build = httpx.get(f"{hub.url}/api/v1/models/{model}@{version}/logs", timeout=10).json()["build"]
    path = next((path for path, line in PATH_LINES.items() if line in build["log"]), "?")
    steps = " / ".join(f"{step['name']} {step['seconds']:.1f}" for step in build["steps"])
    ready = READY_RE.search(build["log"])
    server = f", server launch to ready {float(ready.group(1)):.1f}" if ready else ""
    return path, f"{steps} (engine {_engine_seconds(build['log']):.1f}{server})"


def _predicts(hub: HubProcess, model: str, version: str) -> None:
    url = httpx.get(f"{hub.url}/api/v1/models/{model}/versions/{version}").json()["deployment"]["url"]
    reply = httpx.post(f"{url}/predict", json={"inputs": {"features": [[5.1, 3.5, 1.4, 0.2]]}}, timeout=30)
    assert reply.status_code == 200 and reply.json()["label"] == [0], reply.text


def _timed_versions(hub: HubProcess, root: Path, version: str, label: str) -> list[dict]:
    rows = []
    for model, package in PACKAGES.items():
        seconds = _deploy_seconds(hub, package(root, version))
        _predicts(hub, model, version)
        path, steps = _build_facts(hub, model, version)
        rows.append(row(f"container: {model} {label}, publish to ready ({path} path)", seconds, "s",
                        f"<= {NEW_VERSION_TARGET_S}"))  # fmt: skip
        rows.append(row(f"container: {model} {label}, build steps", steps, "s"))
    return rows


def _remove_versions(client, models) -> None:
    """The version images this benchmark built (its environment images stay: later runs reuse them)."""
    for model in models:
        for image in client.images.list(filters={"label": f"aidhub.model={model}"}):
            if image.labels.get("aidhub.version", "").startswith("9.1."):
                with contextlib.suppress(docker.errors.APIError):
                    client.images.remove(image.id, force=True)


def run_versions() -> list[dict]:
    """Per model: 9.1.0 on a hub with the shared test caches (builds its environment when the
    engine lacks it), then 9.1.1 on that hub and 9.1.2 on a fresh hub home with an empty
    wheelhouse, both timed from `aid publish --deploy` to ready and checked by a prediction."""
    root = Path(tempfile.mkdtemp(prefix="aidhub-bench-versions-"))
    client = docker.DockerClient(base_url=DOCKER_HOST, timeout=300)
    env = {"DOCKER_HOST": DOCKER_HOST, **UNLIMITED}
    fresh_env = {**env, "AIDHUB_WHEELHOUSE": str(root / "empty-wheelhouse"), "PIP_NO_CACHE_DIR": "1"}
    hubs = [
        HubProcess(root / "hub", "container", env),
        HubProcess(root / "fresh-hub", "container", fresh_env),
    ]
    try:
        hubs[0].start()
        for model, package in PACKAGES.items():
            assert _deploy_seconds(hubs[0], package(root, "9.1.0")) > 0, model
        rows = _timed_versions(hubs[0], root, "9.1.1", "new version, same requirements")
        hubs[0].undeploy_all()
        hubs[1].start()
        rows += _timed_versions(hubs[1], root, "9.1.2", "same, fresh hub home (empty wheelhouse)")
        wheels = len(list((root / "empty-wheelhouse").glob("*.whl")))
        rows.append(row("container: wheels the fresh hub home downloaded", wheels, "", "0"))
    finally:
        for hub in hubs:
            if hub.proc is not None:
                hub.undeploy_all()
                hub.stop()
        _remove_versions(client, PACKAGES)
        client.close()
    return rows
