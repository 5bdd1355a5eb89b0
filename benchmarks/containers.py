"""The container runner, measured in one run: cold build to ready, warm build to ready, image size
against its base, and container-served vs process-served throughput of the same version.

Cold: the container hub gets a new, empty wheelhouse (so `pip download` fetches every requirement
again, with pip's own cache off) and every image layer of the example's environment is removed
first: the images labelled `aidhub.env=<key>`, the layers below them down to the base image, and the
dependency stage's layers (their history names `requirements-<key>.txt`), with everything built on
them. The runtime base (aidhub/base:py3.11, scripts/base-image.sh) stays. Warm: a new version with
the same requirements on the same hub. Both builds' logs are read back to check that the
dependency install ran in the cold one and came from the layer cache in the warm one.
"""

from __future__ import annotations

import os
import re
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
STEP_RE = re.compile(r"\[\d+/\d+\] STEP \d+/\d+: (.*)")
BUILT_RE = re.compile(r"Built image \S+ \(\S+\) in ([0-9.]+) s")


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


def _install_cached(steps: list[tuple[str, bool]]) -> bool:
    return next(cached for step, cached in steps if step.startswith(INSTALL_STEP))


def _engine_seconds(log: str) -> float:
    return float(BUILT_RE.search(log).group(1))


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
    assert _install_cached(warm), f"the warm build ran the dependency install again:\n{logs[1]}"
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
        row("container: new version, same requirements, to ready", warm, "s", "<= 15"),
        *cache_rows,
        row("container: ONNX example image / base image", f"{sizes[0]:.0f} / {sizes[1]:.0f}", "MB"),
        row("container-served predict, c=16", container_rps, "req/s"),
        row("process-served predict, c=16", process_rps, "req/s"),
        row("throughput ratio container/process", container_rps / process_rps, ""),
    ]
