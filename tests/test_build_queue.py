"""Builds on the queue (timed steps, progress, cancelling), the watcher that heals crashed servers,
and alias switches that keep every call answered. Real hubs, real model servers (process runner)."""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import threading
import time

import httpx
import pytest

from hub.config import Config
from hub.errors import Conflict
from hub.hub import Hub
from hub.watcher import backoff
from tests.conftest import admin_client
from tests.hubserver import AID, HubProcess, cache_env
from tests.packages import archive, python_package
from tests.postgres import _free_port
from web.app import create_app

pytestmark = pytest.mark.slow


def make_hub(tmp_path, **settings) -> Hub:
    env = {**cache_env(), "AIDHUB_RUNNER": "process"}
    return Hub(Config.load(env=env, home=tmp_path / "home", **settings))


def wait_until(check, timeout: float = 60.0, every: float = 0.1):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = check()
        if value:
            return value
        time.sleep(every)
    raise TimeoutError(f"not true after {timeout} s: {check}")


@pytest.fixture
def hub(tmp_path):
    hub = make_hub(tmp_path, watch_seconds=0.2)
    yield hub
    for model in hub.models():
        for version in hub.model(model["name"])["versions"]:
            hub.undeploy(model["name"], version["version"])
    hub.close()


def test_a_build_records_each_step_with_its_time_and_progress(hub, tmp_path):
    hub.publish(archive(python_package(tmp_path / "pkg", "steps")))
    build = hub.deploy("steps")["build"]
    assert build["status"] == "queued" and build["progress"] == {"done": 0, "total": 4, "step": None}
    hub.deployments.wait(build["id"])
    done = hub.build(build["id"])
    assert done["status"] == "succeeded", done["log"]
    assert [s["name"] for s in done["steps"]] == ["queued", "environment", "start", "smoke test"]
    assert all(s["status"] == "done" and s["seconds"] >= 0 for s in done["steps"])
    assert done["progress"] == {"done": 4, "total": 4, "step": None}
    assert sum(s["seconds"] for s in done["steps"][1:]) <= done["seconds"] + 0.05
    assert "smoke test: examples[0] ok" in done["log"]
    html = admin_client(create_app(hub=hub)).get(f"/builds/{build['id']}").get_data(as_text=True)
    assert "4 of 4 steps done" in html and html.count('<span class="state state-done">done</span>') == 4
    again = hub.deploy("steps")["build"]
    assert again["id"] == build["id"]  # already serving: no second build


def test_a_queued_build_cancelled_never_runs(tmp_path):
    hub = make_hub(tmp_path, build_workers=0, watch_seconds=0)
    try:
        hub.publish(archive(python_package(tmp_path / "pkg", "never")))
        build = hub.deploy("never")["build"]
        assert hub.deploy("never")["build"]["id"] == build["id"]  # one build in flight per version
        assert hub.deployments.queue.pending() == 1
        page = admin_client(create_app(hub=hub))
        html = page.get(f"/builds/{build['id']}").get_data(as_text=True)
        assert "0 of 4 steps done" in html and 'id="build-cancel"' in html
        reply = page.post(f"/builds/{build['id']}/cancel")  # the page's Cancel button
        assert reply.status_code == 303 and reply.headers["Location"].endswith(f"/builds/{build['id']}")
        html = page.get(f"/builds/{build['id']}").get_data(as_text=True)
        assert "state-cancelled" in html and 'id="build-cancel"' not in html
        cancelled = hub.build(build["id"])
        assert cancelled["status"] == "cancelled"
        assert hub.version("never")["deployment"]["status"] == "stopped"
        hub.deployments.queue.start(1)  # a worker now takes the task and leaves it alone
        wait_until(lambda: hub.deployments.queue.executed == 1, timeout=10)
        assert hub.build(build["id"])["status"] == "cancelled"
        assert hub.build(build["id"])["steps"] == []
        with pytest.raises(Conflict, match="already cancelled"):
            hub.cancel_build(build["id"])
    finally:
        hub.close()


def test_cancelling_a_running_build_stops_its_server(hub, tmp_path):
    slow = python_package(tmp_path / "pkg", "slow", setup="import time\ntime.sleep(120)")
    hub.publish(archive(slow))
    build = hub.deploy("slow")["build"]
    wait_until(lambda: hub.build(build["id"])["progress"]["step"] == "start", timeout=120)
    wait_until(lambda: hub.deployments.runner.instances(), timeout=30)  # the server runs, not ready yet
    asked = time.monotonic()
    assert hub.cancel_build(build["id"])["status"] == "cancelling"
    ended = hub.deployments.wait(build["id"], timeout=60)
    assert ended.status == "cancelled"
    assert time.monotonic() - asked < 20  # noticed at the next "waiting" line, not after the 120 s load
    steps = hub.build(build["id"])["steps"]
    assert steps[-1]["name"] == "start" and steps[-1]["status"] == "cancelled"
    assert hub.version("slow")["deployment"]["status"] == "stopped"
    assert hub.deployments.runner.instances() == []  # nothing left running


def test_the_watcher_restarts_a_crashed_server_and_marks_it_unhealthy_meanwhile(hub, tmp_path):
    hub.publish(archive(python_package(tmp_path / "pkg", "crashy")))
    hub.deployments.wait(hub.deploy("crashy")["build"]["id"])
    before = hub.version("crashy")["deployment"]
    assert before["status"] == "ready" and before["restarts"] == 0
    os.killpg(hub.deployments.runner.instances()[0].pid, signal.SIGKILL)
    wait_until(lambda: hub.version("crashy")["deployment"]["status"] == "unhealthy", timeout=10, every=0.02)
    with pytest.raises(Exception, match="unhealthy"):
        hub.predict("crashy", None, {"x": [1.0]})
    after = wait_until(lambda: _ready(hub.version("crashy")["deployment"]), timeout=90)
    assert after["restarts"] == 1 and after["url"] != before["url"]
    assert hub.predict("crashy", None, {"x": [3.0]})["outputs"] == {"y": [6.0]}


def test_a_server_that_cannot_restart_stays_unhealthy_with_backoff_until_it_can(hub, tmp_path):
    flag = tmp_path / "broken"
    setup = f"import os\nif os.path.exists({str(flag)!r}):\n    raise RuntimeError('weights are gone')"
    hub.publish(archive(python_package(tmp_path / "pkg", "flaky", setup=setup)))
    hub.deployments.wait(hub.deploy("flaky")["build"]["id"])
    flag.write_text("")
    os.killpg(hub.deployments.runner.instances()[0].pid, signal.SIGKILL)
    failed = wait_until(lambda: _failed_restart(hub.version("flaky")["deployment"]), timeout=90)
    assert "Restart 1 of flaky@1.0.0 failed" in failed["error"] and "Next try in 2 s" in failed["error"]
    wait_until(lambda: "Restart 2 " in (hub.version("flaky")["deployment"]["error"] or ""), timeout=90)
    flag.unlink()
    after = wait_until(lambda: _ready(hub.version("flaky")["deployment"]), timeout=120)
    assert after["restarts"] == 1
    assert hub.predict("flaky", None, {"x": [2.0]})["outputs"] == {"y": [4.0]}


def test_backoff_doubles_up_to_a_minute():
    assert [backoff(n) for n in range(8)] == [1, 2, 4, 8, 16, 32, 60, 60]


def test_an_alias_moves_only_when_the_new_version_serves_no_call_fails_and_the_old_one_retires(tmp_path):
    # one caller in a loop answers faster than the default 500/s limit now: no 429s in the way
    server = HubProcess(tmp_path / "home", extra_env={"AIDHUB_RATE_PREDICT": "0"}).start()
    try:
        for version, factor in (("1.0.0", 2.0), ("2.0.0", 3.0)):
            server.aid("publish", str(python_package(tmp_path / version, "switch", version, factor)))
        assert server.aid("deploy", "switch@1.0.0").returncode == 0
        assert server.aid("alias", "switch", "production", "1.0.0").returncode == 0

        answers, stop = [], threading.Event()

        def call():
            with httpx.Client(base_url=server.url, timeout=30) as client:
                while not stop.is_set():
                    reply = client.post("/api/v1/models/switch/predict", json={"inputs": {"x": [1.0]}})
                    answers.append((reply.status_code, reply.json().get("version")))

        caller = threading.Thread(target=call)
        caller.start()
        try:
            wait_until(lambda: len(answers) > 20)
            reply = httpx.put(
                f"{server.url}/api/v1/models/switch/aliases/production",
                json={"version": "2.0.0", "retire": True},
                headers=server.headers,
            )
            assert reply.status_code == 202 and reply.json()["moved"] is False
            assert httpx.get(f"{server.url}/api/v1/models/switch").json()["aliases"]["production"] == "1.0.0"
            build = reply.json()["build"]
            done = server.aid("logs", "switch@2.0.0", "--follow")
            assert done.returncode == 0, done.stderr
            assert f"build {build['id']}" in done.stdout or "ready at" in done.stdout
            wait_until(lambda: answers[-1][1] == "2.0.0", timeout=30)
            old = f"{server.url}/api/v1/models/switch/versions/1.0.0"
            wait_until(lambda: httpx.get(old).json()["deployment"]["status"] == "stopped", timeout=30)
            seen = len(answers)  # 1.0.0 is retired (drained, then stopped) while calls go on
            wait_until(lambda: len(answers) > seen + 20)
        finally:
            stop.set()
            caller.join(timeout=30)
        assert {status for status, _ in answers} == {200}, [a for a in answers if a[0] != 200][:5]
        versions = [v for _, v in answers]
        switched = versions.index("2.0.0")
        assert set(versions[:switched]) == {"1.0.0"} and set(versions[switched:]) == {"2.0.0"}
        aliases = httpx.get(f"{server.url}/api/v1/models/switch").json()["aliases"]
        assert aliases["production"] == "2.0.0"
        assert httpx.get(f"{server.url}/api/v1/builds/{build['id']}").json()["alias"] == "production"
    finally:
        server.undeploy_all()
        server.stop()


def _ready(deployment: dict) -> dict | None:
    return deployment if deployment["status"] == "ready" else None


def _failed_restart(deployment: dict) -> dict | None:
    return deployment if "failed" in (deployment["error"] or "") else None


@pytest.fixture
def redis_url(tmp_path):
    """A real Redis server on a free port, gone after the test."""
    server = shutil.which("redis-server")
    assert server, (
        "redis-server is not installed: run 'make test' as root or 'apt-get install -y redis-server'."
    )
    port = _free_port()
    proc = subprocess.Popen(
        [server, "--port", str(port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no",
         "--dir", str(tmp_path)],
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )  # fmt: skip
    url = f"redis://127.0.0.1:{port}/0"
    import redis

    wait_until(lambda: _pings(redis, url), timeout=10)
    yield url
    proc.terminate()
    proc.wait(timeout=10)


def _pings(redis, url: str) -> bool:
    try:
        return redis.Redis.from_url(url).ping()
    except redis.ConnectionError:
        return False


def test_with_a_redis_queue_an_aid_worker_process_runs_the_builds(tmp_path, redis_url):
    queue = {"AIDHUB_QUEUE_URL": redis_url, "AIDHUB_BUILD_WORKERS": "0"}
    server = HubProcess(tmp_path / "home", extra_env=queue).start()
    worker = None
    try:
        assert server.aid("publish", str(python_package(tmp_path / "pkg", "queued"))).returncode == 0
        started = server.aid("deploy", "queued", "--no-wait")
        assert started.returncode == 0 and "starting" in started.stdout
        status = httpx.get(f"{server.url}/api/v1/status").json()["queue"]
        assert (status["workers"], status["pending"]) == (0, 1)  # the hub runs no builds itself
        build = httpx.get(f"{server.url}/api/v1/models/queued/logs").json()["build"]
        assert build["status"] == "queued"  # it waits for a worker

        worker = subprocess.Popen(
            [AID, "worker", "--workers", "1"],
            env=server.env,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
        )
        followed = server.aid("logs", "queued", "--follow")
        assert followed.returncode == 0, followed.stdout + followed.stderr
        assert "smoke test: examples[0] ok" in followed.stdout
        reply = httpx.post(f"{server.url}/api/v1/models/queued/predict", json={"inputs": {"x": [5.0]}})
        assert reply.json()["outputs"] == {"y": [10.0]}
    finally:
        if worker is not None:
            worker.send_signal(signal.SIGTERM)
            output = worker.communicate(timeout=30)[0].decode()
            assert worker.returncode == 0, output
            assert f"on {redis_url}" in output
        server.undeploy_all()
        server.stop()
