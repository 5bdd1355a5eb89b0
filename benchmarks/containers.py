"""The container runner: warm build to ready, image size against its base, and container-served vs
process-served throughput of the same version, measured in one run."""

from __future__ import annotations

import os
import shutil
import tempfile
import time
from pathlib import Path

import docker
import httpx
import yaml

from benchmarks.load import post_load
from benchmarks.serving import SECONDS, row
from tests.hubserver import REPO, HubProcess

MODEL = "iris-onnx"
DOCKER_HOST = os.environ.get("DOCKER_HOST", "unix:///run/aidhub/podman.sock")
BASE_IMAGE = "aidhub/base:py3.11"


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


def _image_mb(client, version: str) -> float:
    images = client.images.list(filters={"label": f"aidhub.version={version}"})
    image = next(i for i in images if i.labels.get("aidhub.model") == MODEL)
    return image.attrs["Size"] / 1e6


def _throughput(hub: HubProcess, version: str) -> float:
    url = httpx.get(f"{hub.url}/api/v1/models/{MODEL}/versions/{version}").json()["deployment"]["url"]
    body = {"inputs": {"features": [[5.1, 3.8, 1.6, 0.2]]}}
    post_load(f"{url}/predict", body, 3)
    return post_load(f"{url}/predict", body, SECONDS)["rps"]


def run() -> list[dict]:
    root = Path(tempfile.mkdtemp(prefix="aidhub-bench-containers-"))
    env = {"DOCKER_HOST": DOCKER_HOST}
    boxed = HubProcess(root / "container-hub", runner="container", extra_env=env).start()
    plain = HubProcess(root / "process-hub", runner="process").start()
    client = docker.DockerClient(base_url=DOCKER_HOST)
    try:
        first = _deploy_seconds(boxed, _version_copy(root, "9.0.0"))  # the dependency layer may be cached
        warm = _deploy_seconds(boxed, _version_copy(root, "9.0.1"))
        assert plain.aid("publish", str(_version_copy(root / "process", "9.0.1")), "--deploy").returncode == 0
        container_rps, process_rps = _throughput(boxed, "9.0.1"), _throughput(plain, "9.0.1")
        sizes = _image_mb(client, "9.0.1"), client.images.get(BASE_IMAGE).attrs["Size"] / 1e6
    finally:
        for hub in (boxed, plain):
            hub.undeploy_all()
            hub.stop()
        client.close()
    return [
        row("container: first version publish to ready", first, "s"),
        row("container: new version, same requirements, to ready", warm, "s", "<= 15"),
        row("container: ONNX example image / base image", f"{sizes[0]:.0f} / {sizes[1]:.0f}", "MB"),
        row("container-served predict, c=16", container_rps, "req/s"),
        row("process-served predict, c=16", process_rps, "req/s"),
        row("throughput ratio container/process", container_rps / process_rps, ""),
    ]
