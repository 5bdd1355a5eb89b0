"""kill -9 of the hub in the middle of things, for real: nothing half-written, every answered
feedback kept, predictions lost only from the last flush interval (the figure is printed)."""

import sqlite3
import threading
import time

import httpx
import pytest

from tests.hubserver import HubProcess, wait_for
from tests.packages import onnx_package

pytestmark = pytest.mark.slow
CALL = {"inputs": {"x": [[1.0, 2.0]]}}
FLUSH_SECONDS = 0.5  # AIDHUB_LOG_FLUSH_SECONDS's default: the prediction log writes at least this often


def test_a_build_cut_short_by_kill_9_is_recorded_as_such_and_built_again(tmp_path):
    hub = HubProcess(tmp_path / "home").start()
    assert hub.aid("publish", str(onnx_package(tmp_path / "pkg"))).returncode == 0
    reply = httpx.post(f"{hub.url}/api/v1/models/doubler/deploy", headers=hub.headers)
    first = reply.json()["build"]["id"]
    wait_for(lambda: _running_step(hub, first), 60, "the build running a step")
    hub.kill()

    again = HubProcess(tmp_path / "home").start()
    try:
        cut = httpx.get(f"{again.url}/api/v1/builds/{first}", headers=again.headers).json()
        assert cut["status"] == "failed"
        assert not [s for s in cut["steps"] if s["status"] == "running"]
        assert "The hub stopped during this build" in cut["log"]
        ready = wait_for(lambda: _deployment(again)["status"] == "ready", 120, "the version built again")
        assert ready
        logs = httpx.get(f"{again.url}/api/v1/models/doubler/logs").json()
        assert logs["build"]["id"] > first and logs["build"]["status"] == "succeeded"
        assert httpx.post(f"{again.url}/api/v1/models/doubler/predict", json=CALL).status_code == 200
    finally:
        again.undeploy_all()
        again.stop()


def _running_step(hub: HubProcess, build_id: int) -> bool:
    build = httpx.get(f"{hub.url}/api/v1/builds/{build_id}", headers=hub.headers).json()
    return build["status"] == "running" and build["progress"]["step"] is not None


def _deployment(hub: HubProcess) -> dict:
    return httpx.get(f"{hub.url}/api/v1/models/doubler/versions/1.0.0").json()["deployment"]


class Traffic:
    """Predictions from a few threads, feedback on every 5th answered one; what got a 2xx, and when."""

    def __init__(self, url: str):
        self.url = url
        self.answered: dict[str, float] = {}  # prediction id -> when its answer came
        self.feedback_acked: set[str] = set()
        self.stop = threading.Event()
        self.threads = [threading.Thread(target=self.run, daemon=True) for _ in range(4)]

    def run(self) -> None:
        with httpx.Client(base_url=self.url, timeout=5) as client:
            try:
                while not self.stop.is_set():
                    self.call(client)
            except httpx.TransportError:
                return  # the hub is gone

    def call(self, client: httpx.Client) -> None:
        reply = client.post("/api/v1/models/doubler/predict", json=CALL)
        if reply.status_code != 200:
            return
        pid = reply.json()["id"]
        self.answered[pid] = time.monotonic()
        if len(self.answered) % 5 == 0:
            said = client.post(f"/api/v1/predictions/{pid}/feedback", json={"correct": True})
            if said.status_code == 201:
                self.feedback_acked.add(pid)


def test_kill_9_under_load_keeps_every_answered_feedback_and_loses_only_the_last_flush(tmp_path):
    hub = HubProcess(tmp_path / "home").start()
    try:
        assert hub.aid("publish", str(onnx_package(tmp_path / "pkg")), "--deploy").returncode == 0
        traffic = Traffic(hub.url)
        for t in traffic.threads:
            t.start()
        wait_for(lambda: len(traffic.feedback_acked) >= 50, 60, "50 answered feedbacks")
        hub.kill()
        killed_at = time.monotonic()
        traffic.stop.set()
        for t in traffic.threads:
            t.join(timeout=10)
        stored, feedback = _stored(tmp_path / "home" / "hub.db")
        lost = {pid: at for pid, at in traffic.answered.items() if pid not in stored}
        oldest_lost = killed_at - min(lost.values(), default=killed_at)
        print(f"kill -9: {len(lost)} of {len(traffic.answered)} answered predictions lost, the oldest "
              f"answered {oldest_lost:.2f} s before the kill; {len(traffic.feedback_acked)} feedbacks "
              "answered, all kept")  # fmt: skip
        assert traffic.feedback_acked <= feedback
        assert oldest_lost <= 2 * FLUSH_SECONDS + 0.5, lost  # the interval, a batch's write, the kill
    finally:
        hub.kill()
        _stop_servers(tmp_path)


def _stored(db_path) -> tuple[set[str], set[str]]:
    with sqlite3.connect(db_path) as db:
        predictions = {r[0] for r in db.execute("SELECT id FROM monitor_prediction")}
        feedback = {r[0] for r in db.execute("SELECT prediction_id FROM monitor_feedback")}
    return predictions, feedback


def _stop_servers(tmp_path) -> None:
    """A hub started again adopts the model server the killed one left; stop it."""
    hub = HubProcess(tmp_path / "home").start()
    hub.undeploy_all()
    hub.stop()
