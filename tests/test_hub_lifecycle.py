"""A hub that crashes or restarts loses nothing stored and keeps its models serving."""

import json
import socket
import time

import httpx
import pytest

from tests.hubserver import HubProcess
from tests.packages import onnx_package

pytestmark = pytest.mark.slow


def wait_for_file(folder, pattern: str, timeout: float = 10.0):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        found = list(folder.glob(pattern)) if folder.exists() else []
        if found:
            return found
        time.sleep(0.05)
    raise TimeoutError(f"no {pattern} in {folder}")


def test_killing_the_hub_mid_upload_leaves_no_version_and_no_partial_blob(tmp_path):
    hub = HubProcess(tmp_path / "home").start()
    conn = socket.create_connection(("127.0.0.1", hub.port))
    head = (
        "POST /api/v1/models HTTP/1.1\r\nHost: x\r\nContent-Type: application/gzip\r\n"
        f"Content-Length: {50 * 2**20}\r\n\r\n"
    )
    conn.sendall(head.encode() + b"\x1f\x8b" + b"\0" * (4 * 2**20))
    wait_for_file(tmp_path / "home" / "blobs" / "tmp", "upload-*")
    hub.kill()
    conn.close()
    assert not list((tmp_path / "home" / "blobs").glob("sha256/*/*"))  # nothing half-written took a digest

    again = HubProcess(tmp_path / "home").start()
    try:
        assert list((tmp_path / "home" / "blobs" / "tmp").iterdir()) == []  # the stale temp file is gone
        assert httpx.get(f"{again.url}/api/v1/models").json() == {"models": []}
    finally:
        again.stop()


def test_a_restarted_hub_adopts_running_models_and_kept_every_prediction(tmp_path):
    first = HubProcess(tmp_path / "home").start()
    try:
        assert first.aid("publish", str(onnx_package(tmp_path / "pkg")), "--deploy").returncode == 0
        version = httpx.get(f"{first.url}/api/v1/models/doubler/versions/1.0.0").json()
        for _ in range(25):
            reply = httpx.post(
                f"{first.url}/api/v1/models/doubler/predict", json={"inputs": {"x": [[1.0, 2.0]]}}
            )
            assert reply.status_code == 200
    finally:
        first.stop()  # SIGTERM right after the calls: the prediction log must flush on the way out

    second = HubProcess(tmp_path / "home").start()
    try:
        card = json.loads(second.aid("scorecard", "doubler", "--json").stdout)
        assert card["requests"] == 25
        adopted = httpx.get(f"{second.url}/api/v1/models/doubler/versions/1.0.0").json()
        assert adopted["deployment"]["status"] == "ready"
        assert adopted["deployment"]["url"] == version["deployment"]["url"]  # the same server, not a rebuild
        assert httpx.get(f"{second.url}/api/v1/models/doubler/logs").json()["build"]["id"] == 1
        reply = httpx.post(
            f"{second.url}/api/v1/models/doubler/predict", json={"inputs": {"x": [[3.0, 4.0]]}}
        )
        assert reply.json()["outputs"] == {"y": [[6.0, 8.0]]}
    finally:
        second.undeploy_all()
        second.stop()


def test_a_hub_on_postgresql_serves_the_whole_spine(tmp_path, postgres):
    url = postgres.create_database("spine")
    hub = HubProcess(tmp_path / "home", extra_env={"AIDHUB_DATABASE_URL": url}).start()
    try:
        assert hub.aid("status").stdout.splitlines()[2].startswith("database postgresql")
        assert hub.aid("publish", str(onnx_package(tmp_path / "pkg")), "--deploy").returncode == 0
        ids = [
            httpx.post(
                f"{hub.url}/api/v1/models/doubler/predict", json={"inputs": {"x": [[1.0, 2.0]]}}
            ).json()["id"]
            for _ in range(4)
        ]
        for pid, verdict in zip(ids, ["--correct", "--correct", "--correct", "--wrong"], strict=True):
            assert hub.aid("feedback", pid, verdict).returncode == 0
        card = json.loads(hub.aid("scorecard", "doubler", "--json").stdout)
        assert (card["requests"], card["feedback"]["count"], card["feedback"]["accuracy"]) == (4, 4, 0.75)
    finally:
        hub.undeploy_all()
        hub.stop()


def test_a_hub_on_the_container_runner_builds_an_image_and_serves_from_it(tmp_path, engine, docker_host):
    hub = HubProcess(tmp_path / "home", runner="container", extra_env={"DOCKER_HOST": docker_host}).start()
    try:
        assert "runner   container: AIDHUB_RUNNER=container" in hub.aid("status").stdout
        result = hub.aid("publish", str(onnx_package(tmp_path / "pkg", name="boxed")), "--deploy")
        assert result.returncode == 0, result.stdout + result.stderr
        reply = httpx.post(f"{hub.url}/api/v1/models/boxed/predict", json={"inputs": {"x": [[1.0, 2.0]]}})
        assert reply.json()["outputs"] == {"y": [[2.0, 4.0]]}
        running = engine.containers.list(filters={"label": "aidhub.model=boxed"})
        assert [c.labels["aidhub.version"] for c in running] == ["1.0.0"]
    finally:
        hub.undeploy_all()
        hub.stop()
    assert engine.containers.list(all=True, filters={"label": "aidhub.model=boxed"}) == []
