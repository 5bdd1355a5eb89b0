"""A hub that crashes or restarts loses nothing stored and keeps its models serving."""

import json
import socket
import time

import httpx
import pytest

from tests.hubserver import HubProcess
from tests.packages import onnx_package

pytestmark = pytest.mark.slow


def test_killing_the_hub_mid_upload_keeps_the_part_to_resume_and_stores_no_blob(tmp_path):
    hub = HubProcess(tmp_path / "home").start()
    conn = socket.create_connection(("127.0.0.1", hub.port))
    sha, size = "ab" * 32, 50 * 2**20
    head = (
        f"PATCH /api/v1/blobs/{sha}?offset=0&size={size} HTTP/1.1\r\nHost: x\r\n"
        f"Authorization: Bearer {hub.token}\r\n"
        f"Content-Type: application/octet-stream\r\nContent-Length: {size}\r\n\r\n"
    )
    conn.sendall(head.encode() + b"\0" * (4 * 2**20))
    part = tmp_path / "home" / "blobs" / "uploads" / sha
    deadline = time.monotonic() + 10
    while not (part.exists() and part.stat().st_size > 0) and time.monotonic() < deadline:
        time.sleep(0.05)
    hub.kill()
    conn.close()
    assert not list((tmp_path / "home" / "blobs").glob("sha256/*/*"))  # nothing half-written took a digest

    again = HubProcess(tmp_path / "home").start()
    try:
        missing = httpx.post(
            f"{again.url}/api/v1/blobs/missing",
            json={"blobs": [{"sha256": sha, "size": size}]},
            headers=again.headers,
        )
        assert 0 < missing.json()["missing"][0]["offset"] <= 4 * 2**20  # a client resumes from there
        assert httpx.get(f"{again.url}/api/v1/models").json()["models"] == []
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


def test_a_hub_on_the_container_runner_builds_heals_adopts_and_removes_orphans(tmp_path, engine, docker_host):
    """Builds an image and serves from it; a container killed from outside comes back (unhealthy
    meanwhile); a restarted hub adopts the running container (no rebuild) and removes its orphans."""
    home = tmp_path / "home"
    env = {"DOCKER_HOST": docker_host, "AIDHUB_WATCH_SECONDS": "0.5"}
    hub = HubProcess(home, runner="container", extra_env=env).start()
    second = None
    try:
        assert "runner   container: AIDHUB_RUNNER=container" in hub.aid("status").stdout
        result = hub.aid("publish", str(onnx_package(tmp_path / "pkg", name="boxed")), "--deploy")
        assert result.returncode == 0, result.stdout + result.stderr
        assert predict_boxed(hub) == {"y": [[2.0, 4.0]]}
        running = engine.containers.list(filters={"label": "aidhub.model=boxed"})
        assert [c.labels["aidhub.version"] for c in running] == ["1.0.0"]

        running[0].kill()
        assert wait_for_status(hub, "unhealthy", every=0.05)["error"].startswith(
            "The server of boxed@1.0.0 stopped"
        )
        healed = wait_for_status(hub, "ready", timeout=120)
        assert healed["restarts"] == 1
        assert predict_boxed(hub) == {"y": [[2.0, 4.0]]}
        serving = engine.containers.list(filters={"label": "aidhub.model=boxed"})
        assert len(serving) == 1 and serving[0].id != running[0].id

        broken = onnx_package(tmp_path / "v2", name="boxed", version="2.0.0",
                              requirements=["aidhub-no-such-package==1.0"])  # fmt: skip
        failed = hub.aid("publish", str(broken), "--deploy")
        assert failed.returncode == 1 and "aidhub-no-such-package" in failed.stderr
        assert predict_boxed(hub) == {"y": [[2.0, 4.0]]}  # 1.0.0 serves on
        hub.stop()

        orphan = engine.containers.run(
            serving[0].image.id, detach=True, command=["sleep", "600"],
            labels={**serving[0].labels, "aidhub.key": "gone--1.0.0", "aidhub.version": "9.9.9"},
        )  # fmt: skip
        second = HubProcess(home, runner="container", extra_env=env).start()
        logs = httpx.get(f"{second.url}/api/v1/models/boxed@1.0.0/logs").json()
        assert logs["build"]["id"] == 1  # adopted, not rebuilt
        assert predict_boxed(second) == {"y": [[2.0, 4.0]]}
        ids = [c.id for c in engine.containers.list(all=True, filters={"label": "aidhub.model=boxed"})]
        assert ids == [serving[0].id]  # the same container, adopted; the orphan is gone
        assert orphan.id not in ids
    finally:
        for server in (second, hub):
            if server and server.proc.poll() is None:
                server.undeploy_all()
                server.stop()
    assert engine.containers.list(all=True, filters={"label": "aidhub.model=boxed"}) == []


def predict_boxed(hub: HubProcess) -> dict:
    reply = httpx.post(f"{hub.url}/api/v1/models/boxed/predict", json={"inputs": {"x": [[1.0, 2.0]]}})
    assert reply.status_code == 200, reply.text
    return reply.json()["outputs"]


def wait_for_status(hub: HubProcess, status: str, timeout: float = 30.0, every: float = 0.2) -> dict:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        deployment = httpx.get(f"{hub.url}/api/v1/models/boxed/versions/1.0.0").json()["deployment"]
        if deployment["status"] == status:
            return deployment
        time.sleep(every)
    raise TimeoutError(f"boxed@1.0.0 is {deployment['status']}, not {status}, after {timeout} s")
