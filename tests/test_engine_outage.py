"""The container engine going away under a running hub and coming back, for real: the hub runs on a
Podman service of this test's own (on the same storage as the main one, so the images other runs
built are found again), which the test kills and starts again on the same socket."""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import time
from collections.abc import Callable
from pathlib import Path

import httpx
import pytest

from tests.hubserver import HubProcess
from tests.packages import onnx_package

pytestmark = pytest.mark.slow
MODEL = "outage"


class PodmanService:
    """`podman system service` on a socket of its own, as scripts/container-engine.sh starts it."""

    def __init__(self, socket: Path):
        self.socket = socket
        self.docker_host = f"unix://{socket}"
        self.proc: subprocess.Popen | None = None

    def start(self, timeout: float = 30.0) -> PodmanService:
        assert shutil.which("podman"), "podman is not installed: scripts/container-engine.sh installs it"
        self.socket.parent.mkdir(parents=True, exist_ok=True)
        self.socket.unlink(missing_ok=True)  # left by a killed one, as scripts/container-engine.sh does
        with open(self.socket.parent / "podman-service.log", "ab") as log:
            self.proc = subprocess.Popen(
                ["podman", "system", "service", "--time=0", self.docker_host],
                stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, start_new_session=True,
            )  # fmt: skip
        wait_for(self.answers, timeout, f"podman system service on {self.socket}")
        return self

    def answers(self) -> bool:
        assert self.proc.poll() is None, (self.socket.parent / "podman-service.log").read_text()[-2000:]
        try:
            transport = httpx.HTTPTransport(uds=str(self.socket))
            with httpx.Client(transport=transport, timeout=2) as client:
                return client.get("http://d/_ping").text == "OK"
        except httpx.TransportError:
            return False

    def kill(self) -> None:
        """The engine dies: its containers run on under their conmon."""
        os.kill(self.proc.pid, signal.SIGKILL)
        self.proc.wait(timeout=30)

    def stop(self) -> None:
        if self.proc and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(timeout=15)
            except subprocess.TimeoutExpired:  # it waits for clients that are still connected
                self.kill()


def test_the_engine_going_away_and_coming_back(tmp_path, engine):
    """With the engine gone, ready servers serve on with a note, a dead one is unhealthy and its
    restarts say why, a build fails with the engine's message; once it is back, without a hub
    restart, the dead server is restarted, the build succeeds and the note goes."""
    service = PodmanService(tmp_path / "engine" / "podman.sock").start()
    env = {"DOCKER_HOST": service.docker_host, "AIDHUB_WATCH_SECONDS": "0.3"}
    hub = HubProcess(tmp_path / "home", runner="container", extra_env=env)
    try:
        hub.start()
        for version in ("1.0.0", "2.0.0"):  # built side by side (two build workers)
            package = onnx_package(tmp_path / version, name=MODEL, version=version)
            assert hub.aid("publish", str(package)).returncode == 0
            assert hub.aid("deploy", f"{MODEL}@{version}", "--no-wait").returncode == 0
        for version in ("1.0.0", "2.0.0"):
            wait_for(lambda v=version: deployment(hub, v)["status"] == "ready", 300, f"{version} ready")

        service.kill()
        _while_the_engine_is_away(hub, engine, service.docker_host, tmp_path / "3.0.0")

        service.start()
        _once_it_is_back(hub)
    finally:
        _clean_up(hub, service, engine)


def _while_the_engine_is_away(hub: HubProcess, engine, docker_host: str, new: Path) -> None:
    """What the hub does and says while no engine answers."""
    assert predict(hub, "1.0.0") == {"y": [[2.0, 4.0]]}
    note = (
        f"The container engine at DOCKER_HOST={docker_host} does not answer; this server still "
        "serves but cannot be restarted or replaced until it is back."
    )
    wait_for(lambda: deployment(hub, "1.0.0")["error"] == note, 30, "the engine note")
    assert deployment(hub, "1.0.0")["status"] == "ready"
    assert predict(hub, "1.0.0") == {"y": [[2.0, 4.0]]}  # still in service
    assert note in httpx.get(f"{hub.url}/models/{MODEL}?version=1.0.0").text
    assert f"\n1.0.0: {note}\n" in hub.aid("show", MODEL).stdout

    away = f"No container engine answers at DOCKER_HOST={docker_host} (Connection refused). Start it"
    refused = hub.aid("undeploy", f"{MODEL}@1.0.0")  # it cannot be stopped: it serves on, and says so
    assert refused.returncode == 1 and away in refused.stderr, refused.stdout + refused.stderr
    assert deployment(hub, "1.0.0")["status"] == "ready"

    failed = hub.aid("publish", str(onnx_package(new, name=MODEL, version="3.0.0")), "--deploy")
    assert failed.returncode == 1 and away in failed.stderr, failed.stdout + failed.stderr
    build = httpx.get(f"{hub.url}/api/v1/models/{MODEL}@3.0.0/logs").json()["build"]
    assert build["status"] == "failed" and f"failed: {away}" in build["log"]
    assert deployment(hub, "3.0.0")["error"].startswith(away)

    # a server that dies meanwhile (killed through the main engine, on the same storage)
    killed = engine.containers.list(filters={"label": f"aidhub.key={MODEL}--2.0.0"})
    assert len(killed) == 1
    killed[0].kill()
    wait_for(lambda: deployment(hub, "2.0.0")["status"] == "unhealthy", 30, "2.0.0 unhealthy")
    restart = f"Restart 1 of {MODEL}@2.0.0 failed: {away}"
    wait_for(lambda: (deployment(hub, "2.0.0")["error"] or "").startswith(restart), 30, "a failed restart")
    assert httpx.post(f"{hub.url}/api/v1/models/{MODEL}@2.0.0/predict", json=INPUTS).status_code == 503


def _once_it_is_back(hub: HubProcess) -> None:
    """What comes back once the engine answers again, without a restart of the hub."""
    deployed = hub.aid("deploy", f"{MODEL}@3.0.0")
    assert deployed.returncode == 0, deployed.stdout + deployed.stderr
    assert predict(hub, "3.0.0") == {"y": [[2.0, 4.0]]}
    wait_for(lambda: deployment(hub, "2.0.0")["status"] == "ready", 60, "2.0.0 restarted")
    assert predict(hub, "2.0.0") == {"y": [[2.0, 4.0]]}
    wait_for(lambda: deployment(hub, "1.0.0")["error"] is None, 30, "the note cleared")
    for version in ("1.0.0", "2.0.0", "3.0.0"):
        shown = deployment(hub, version)
        assert (shown["status"], shown["error"]) == ("ready", None), shown
    assert deployment(hub, "2.0.0")["restarts"] == 1
    assert deployment(hub, "1.0.0")["restarts"] == 0  # served through it all
    assert "does not answer" not in httpx.get(f"{hub.url}/models/{MODEL}?version=1.0.0").text


def _clean_up(hub: HubProcess, service: PodmanService, engine) -> None:
    try:
        if hub.proc and hub.proc.poll() is None:
            if service.proc.poll() is not None:
                service.start()
            hub.undeploy_all()
            hub.stop()
    finally:
        service.stop()
        for container in engine.containers.list(all=True, filters={"label": f"aidhub.model={MODEL}"}):
            container.remove(force=True)
    assert engine.containers.list(all=True, filters={"label": f"aidhub.model={MODEL}"}) == []


INPUTS = {"inputs": {"x": [[1.0, 2.0]]}}


def predict(hub: HubProcess, version: str) -> dict:
    reply = httpx.post(f"{hub.url}/api/v1/models/{MODEL}@{version}/predict", json=INPUTS, timeout=30)
    assert reply.status_code == 200, reply.text
    return reply.json()["outputs"]


def deployment(hub: HubProcess, version: str) -> dict:
    return httpx.get(f"{hub.url}/api/v1/models/{MODEL}/versions/{version}").json()["deployment"]


def wait_for(condition: Callable[[], bool], timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise TimeoutError(f"no {what} after {timeout:.0f} s")
        time.sleep(0.1)
