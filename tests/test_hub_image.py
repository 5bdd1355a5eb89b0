"""The hub's own image (root Dockerfile): built through the engine's API on the local base image, offline
from the wheelhouse scripts/hub-image.sh fills, then run confined (non-root, read-only root filesystem)
with its port published on 127.0.0.1. A missing engine, base image or wheelhouse FAILS these tests.

The image stays tagged aidhub/hub:test between runs, so a warm rebuild reuses its layers; the container
is always removed."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path

import httpx
import pytest

from tests.conftest import BASE_IMAGE

REPO = Path(__file__).resolve().parent.parent
TAG = "aidhub/hub:test"
LABELS = {"aidhub.test": "hub-image"}
BUILD_HINT = (  # what Podman says when another process removes a build's working container mid-build
    "(on 'identifier is not a container' or 'layer not known', something removed the build's working "
    "container while it ran, e.g. a concurrent `podman rm --storage` of build leftovers: run it again)"
)
EMPTY_CATALOG = "No model is published yet. Publish one with <code>aid publish ./my-model</code>."


def fill_wheelhouse() -> None:
    """The hub's runtime wheels under .cache/hub-wheels (kept between runs: refilled only when stale)."""
    script = REPO / "scripts" / "hub-image.sh"
    env = {**os.environ, "AIDHUB_PYTHON": sys.executable}  # pip of the Python 3.11 running the tests
    done = subprocess.run([script, "--wheels-only"], capture_output=True, text=True, timeout=900, env=env)
    if done.returncode != 0:
        pytest.fail(f"{script} --wheels-only failed (exit {done.returncode}):\n{done.stderr}", pytrace=False)


def build_image(engine) -> str:
    """Build TAG from the repository's Dockerfile on BASE_IMAGE; its image id. The image an earlier run
    tagged is removed when this build replaces it."""
    before, built, log = _image_id(engine), None, []
    stream = engine.api.build(
        path=str(REPO),
        tag=TAG,
        buildargs={"BASE_IMAGE": BASE_IMAGE},
        network_mode="none",
        rm=True,
        decode=True,
    )
    for chunk in stream:
        log.append(chunk.get("stream", ""))
        if "error" in chunk:
            failed = f"Building {TAG} from ./Dockerfile failed {BUILD_HINT}: {chunk['error'][:1500]}"
            pytest.fail(f"{failed}\n{''.join(log)[-4000:]}", pytrace=False)
        built = (chunk.get("aux") or {}).get("ID") or built
    if built is None:  # Podman ends the stream without an error when the build is killed
        pytest.fail(f"Building {TAG} gave no image {BUILD_HINT}:\n{''.join(log)[-4000:]}", pytrace=False)
    if before and before != built:
        engine.images.remove(before)
    return built


def _image_id(engine) -> str | None:
    import docker

    try:
        return engine.images.get(TAG).id
    except docker.errors.ImageNotFound:
        return None


def remove_containers(engine) -> None:
    """This test's containers, with their anonymous /data volumes (also those a killed run left behind)."""
    for container in engine.containers.list(all=True, filters={"label": "aidhub.test=hub-image"}):
        container.remove(force=True, v=True)


def wait_until_answering(container, url: str, timeout: float = 60.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            if httpx.get(f"{url}/api/v1/health", timeout=2).status_code == 200:
                return
        except httpx.TransportError:
            pass
        container.reload()
        if container.status in ("exited", "dead", "stopped"):
            break
        time.sleep(0.3)
    logs = container.logs(tail=40).decode(errors="replace")
    pytest.fail(
        f"The hub in {TAG} did not answer at {url} ({container.status}); its log:\n{logs}", pytrace=False
    )


@pytest.fixture(scope="module")
def hub(engine):
    """(container, url): the hub's image, built and started; removed afterwards."""
    began = time.monotonic()
    remove_containers(engine)  # a killed run's container would pin the image this build replaces
    fill_wheelhouse()
    build_image(engine)
    built = time.monotonic()
    container = engine.containers.run(
        TAG,
        detach=True,
        ports={"8000/tcp": ("127.0.0.1", None)},
        read_only=True,
        tmpfs={"/tmp": ""},
        cap_drop=["ALL"],
        security_opt=["no-new-privileges"],
        labels=LABELS,
    )
    try:
        container.reload()
        port = container.attrs["NetworkSettings"]["Ports"]["8000/tcp"][0]["HostPort"]
        url = f"http://127.0.0.1:{port}"
        wait_until_answering(container, url)
        print(
            f"wheelhouse + build {built - began:.1f} s, start to answering {time.monotonic() - built:.1f} s"
        )
        yield container, url
    finally:
        remove_containers(engine)


def test_health_answers_with_the_process_runner_and_the_home_on_the_data_volume(hub):
    _, url = hub
    reply = httpx.get(f"{url}/api/v1/health", timeout=10)
    assert reply.status_code == 200
    health = reply.json()
    reason = health["runner_reason"]
    image_facts = {key: health.get(key) for key in ("ok", "runner", "database", "home", "deployments")}
    assert image_facts == {
        "ok": True,
        "runner": "process",
        "database": "sqlite",
        "home": "/data",
        "deployments": {},
    }
    assert reason.startswith("auto: no container engine answers at unix:///var/run/docker.sock ("), reason


def test_catalog_page_and_its_stylesheet_come_from_the_installed_package(hub):
    _, url = hub
    page = httpx.get(f"{url}/", timeout=10)
    assert page.status_code == 200
    assert page.headers["content-type"] == "text/html; charset=utf-8"
    assert "<title>Models · aidhub</title>" in page.text
    assert "<h1>Models</h1>" in page.text
    assert EMPTY_CATALOG in page.text
    css = httpx.get(f"{url}/static/hub.css", timeout=10)
    assert css.status_code == 200
    assert css.content == (REPO / "web" / "static" / "hub.css").read_bytes()


def test_image_runs_as_its_own_user_with_the_database_on_the_data_volume(hub, engine):
    container, _ = hub
    assert engine.images.get(TAG).attrs["Config"]["User"] == "aidhub"
    assert [m["Destination"] for m in container.attrs["Mounts"]] == ["/data"]
    script = "id -u; ls /data; touch /home/aidhub/x 2>&1; command -v aid"
    output = container.exec_run(["sh", "-c", script]).output.decode()
    lines = output.splitlines()
    assert lines[0] == "1000"
    assert "hub.db" in lines[1:-2]
    assert "Read-only file system" in output
    assert lines[-1] == "/opt/hub/bin/aid"
