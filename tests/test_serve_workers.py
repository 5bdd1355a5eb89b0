"""`aid serve --workers 2` for real: gunicorn's master, two gevent web workers and the supervisor
process that owns the model servers and runs the builds (cli/serve.py, cli/supervisor.py)."""

from __future__ import annotations

import os
import re
import signal
import subprocess
import threading
import time
from pathlib import Path

import httpx
import pytest
from prometheus_client.mmap_dict import MmapedDict

from tests.hubserver import AID, HubProcess, wait_for
from tests.packages import onnx_package
from tests.postgres import _free_port

pytestmark = pytest.mark.slow
CALL = {"inputs": {"x": [[1.0, 2.0]]}}
PREDICTIONS = 'aidhub_predictions_total{model="doubler",source="hub",status="ok",version="1.0.0"}'


@pytest.fixture(scope="module")
def hub(tmp_path_factory):
    """One hub of two web workers with doubler@1.0.0 deployed, for the tests in this file in order."""
    root = tmp_path_factory.mktemp("workers")
    hub = HubProcess(root / "home", workers=2).start()
    try:
        done = hub.aid("publish", str(onnx_package(root / "pkg")), "--deploy")
        assert done.returncode == 0, done.stdout + done.stderr
        yield hub
    finally:
        hub.undeploy_all()
        hub.stop()


def children(hub: HubProcess) -> dict[str, list[int]]:
    """The master's child processes: the supervisor and the web workers."""
    found: dict[str, list[int]] = {"supervisor": [], "web": []}
    for entry in os.listdir("/proc"):
        try:
            stat = Path(f"/proc/{entry}/stat").read_text()
            cmdline = Path(f"/proc/{entry}/cmdline").read_bytes()
        except (OSError, ValueError):
            continue
        if entry.isdigit() and int(stat.rsplit(")", 1)[1].split()[1]) == hub.proc.pid:
            found["supervisor" if b"cli.supervisor" in cmdline else "web"].append(int(entry))
    return found


def metric(hub: HubProcess, line_start: str) -> float:
    text = httpx.get(f"{hub.url}/metrics").text
    values = [line.rsplit(" ", 1)[1] for line in text.splitlines() if line.startswith(line_start + " ")]
    return float(values[0]) if values else 0.0


def served_by(hub: HubProcess) -> dict[int, float]:
    """Hub predictions per web worker, from the files prometheus_client keeps per process."""
    counts = {}
    for path in (hub.home / "metrics").glob("counter_*.db"):
        pid = int(path.stem.split("_")[1])
        for key, value, _, _ in MmapedDict.read_all_values_from_file(str(path)):
            if '"aidhub_predictions_total"' in key and '"hub"' in key:
                counts[pid] = counts.get(pid, 0.0) + value
    return counts


def predict_many(hub: HubProcess, calls: int, threads: int = 4) -> list[int]:
    """`calls` predictions from `threads` threads, each on a new connection; their status codes."""
    codes: list[int] = []

    def run(n: int) -> None:
        for _ in range(n):
            codes.append(httpx.post(f"{hub.url}/api/v1/models/doubler/predict", json=CALL).status_code)

    workers = [threading.Thread(target=run, args=(calls // threads,)) for _ in range(threads)]
    for thread in workers:
        thread.start()
    for thread in workers:
        thread.join()
    return codes


def test_the_hub_is_a_master_a_supervisor_and_two_web_workers(hub):
    assert {role: len(pids) for role, pids in children(hub).items()} == {"supervisor": 1, "web": 2}
    assert "(home " in hub.output() and ", 2 web workers)" in hub.output()
    status = httpx.get(f"{hub.url}/api/v1/status", headers=hub.headers).json()
    assert status["queue"] == {"storage": "sqlite", "pending": 0, "workers": 2}  # the supervisor's


def test_the_supervisor_ran_the_build_once_and_web_workers_none(hub):
    supervisor = children(hub)["supervisor"][0]
    log = (hub.home / "logs" / "hub.log").read_text()
    executed = re.findall(r"\[(\d+)\] INFO huey: hub\.deployments\.aidhub\.build: \S+ executed", log)
    assert executed == [str(supervisor)]
    build = httpx.get(f"{hub.url}/api/v1/models/doubler/logs").json()["build"]
    assert (build["id"], build["status"]) == (1, "succeeded")
    assert httpx.get(f"{hub.url}/api/v1/builds/2", headers=hub.headers).status_code == 404


def test_predictions_through_both_workers_are_counted_once_across_them(hub):
    before = metric(hub, PREDICTIONS)
    sent = 0
    while len(served_by(hub)) < 2 and sent < 200:  # until both web workers have answered some
        assert predict_many(hub, 20) == [200] * 20
        sent += 20
    assert len(served_by(hub)) == 2, f"one web worker answered all {sent} calls"
    assert metric(hub, PREDICTIONS) == before + sent
    assert sum(served_by(hub).values()) == before + sent
    scorecard = lambda: hub.aid("scorecard", "doubler", "--json").stdout  # noqa: E731
    wait_for(lambda: f'"requests": {int(before + sent)},' in scorecard(), 10, "the log written")


def test_feedback_reaches_a_prediction_the_other_worker_served(hub):
    for _ in range(10):  # new connections: feedback often lands on the other worker, before its flush
        prediction = httpx.post(f"{hub.url}/api/v1/models/doubler/predict", json=CALL).json()["id"]
        said = httpx.post(f"{hub.url}/api/v1/predictions/{prediction}/feedback", json={"correct": True})
        assert said.status_code == 201, said.text
    assert metric(hub, 'aidhub_feedback_total{correct="true",model="doubler",version="1.0.0"}') == 10


def test_direct_calls_are_counted_once_though_a_web_worker_collects_them_too(hub):
    server = httpx.get(f"{hub.url}/api/v1/models/doubler/versions/1.0.0").json()["deployment"]["url"]
    direct = PREDICTIONS.replace('"hub"', '"direct"')
    before = metric(hub, direct)
    ids = [httpx.post(f"{server}/predict", json=CALL).headers["X-Prediction-Id"] for _ in range(5)]
    said = httpx.post(f"{hub.url}/api/v1/predictions/{ids[-1]}/feedback", json={"correct": False})
    assert said.status_code == 201, said.text  # the web worker collected it, or the supervisor had
    wait_for(lambda: metric(hub, direct) == before + 5, 10, "the supervisor counting the direct calls")
    time.sleep(2.5)  # two more rounds of the supervisor's collector, and the web worker's records
    assert metric(hub, direct) == before + 5


def test_killing_a_web_worker_does_not_stop_serving_nor_lose_its_counts(hub):
    before = metric(hub, PREDICTIONS)
    victim = children(hub)["web"][0]
    os.kill(victim, signal.SIGKILL)
    assert predict_many(hub, 20) == [200] * 20  # the other worker answers meanwhile
    replaced = wait_for(lambda: len(children(hub)["web"]) == 2 and victim not in children(hub)["web"],
                        30, "gunicorn starting a new web worker")  # fmt: skip
    assert replaced
    assert predict_many(hub, 20) == [200] * 20
    assert metric(hub, PREDICTIONS) == before + 40  # the dead worker's counts stay in the sum


def test_a_killed_supervisor_is_started_again_adopts_the_server_and_does_not_count_twice(hub):
    before = metric(hub, PREDICTIONS)
    server = httpx.get(f"{hub.url}/api/v1/models/doubler/versions/1.0.0").json()["deployment"]
    old = children(hub)["supervisor"][0]
    os.kill(old, signal.SIGKILL)
    assert predict_many(hub, 8) == [200] * 8  # the web workers route on from the database
    wait_for(lambda: children(hub)["supervisor"] not in ([], [old]), 30, "a new supervisor")
    log = hub.home / "logs" / "hub.log"
    wait_for(lambda: "adopted doubler@1.0.0" in log.read_text(), 30, "the server adopted")
    again = httpx.get(f"{hub.url}/api/v1/models/doubler/versions/1.0.0").json()["deployment"]
    assert (again["status"], again["url"]) == ("ready", server["url"])
    assert metric(hub, PREDICTIONS) == before + 8  # not seeded again from the database


def test_a_second_hub_on_the_same_port_stops_before_it_touches_the_home(hub):
    before, supervisor = metric(hub, PREDICTIONS), children(hub)["supervisor"]
    command = [AID, "serve", "--port", str(hub.port), "--workers", "2"]
    done = subprocess.run(command, env=hub.env, capture_output=True, text=True, timeout=60)
    assert done.returncode == 1, done.stderr
    assert children(hub)["supervisor"] == supervisor
    assert metric(hub, PREDICTIONS) == before  # its metrics folder was left alone
    assert httpx.post(f"{hub.url}/api/v1/models/doubler/predict", json=CALL).status_code == 200


def test_undeploy_through_a_web_worker_stops_the_supervisors_server(hub):
    server = httpx.get(f"{hub.url}/api/v1/models/doubler/versions/1.0.0").json()["deployment"]["url"]
    assert httpx.get(f"{server}/readyz").status_code == 200
    assert httpx.post(f"{hub.url}/api/v1/models/doubler/undeploy", headers=hub.headers).status_code == 200
    assert httpx.post(f"{hub.url}/api/v1/models/doubler/predict", json=CALL).status_code == 503
    with pytest.raises(httpx.ConnectError):
        httpx.get(f"{server}/readyz")


def test_a_restarted_hub_continues_its_counters_from_the_database_once(tmp_path):
    hub = HubProcess(tmp_path / "home", workers=2).start()
    again = None
    try:
        assert hub.aid("publish", str(onnx_package(tmp_path / "pkg")), "--deploy").returncode == 0
        assert predict_many(hub, 12) == [200] * 12
        hub.stop()  # the prediction log is flushed on the way out; the server runs on
        again = HubProcess(tmp_path / "home", workers=2).start()
        assert metric(again, PREDICTIONS) == 12  # seeded by the supervisor, not by each process
        assert predict_many(again, 4) == [200] * 4
        assert metric(again, PREDICTIONS) == 16
    finally:
        for server in (again, hub):
            if server and server.proc.poll() is None:
                server.undeploy_all()
                server.stop()


def test_sigterm_stops_the_master_the_supervisor_and_the_web_workers(tmp_path):
    hub = HubProcess(tmp_path / "home", workers=2).start()
    pids = [pid for role in children(hub).values() for pid in role]
    assert len(pids) == 3
    hub.stop()
    assert hub.proc.returncode == 0
    assert [pid for pid in pids if Path(f"/proc/{pid}").exists()] == []


def test_a_supervisor_that_cannot_open_the_hub_is_one_line_and_exit_2(tmp_path):
    port = _free_port()
    env = {**os.environ, "AIDHUB_HOME": str(tmp_path), "AIDHUB_DATABASE_URL": "mysql://x"}
    done = subprocess.run([AID, "serve", "--port", str(port), "--workers", "2"],
                          capture_output=True, text=True, env=env, timeout=60)  # fmt: skip
    assert done.returncode == 2
    assert done.stderr == (
        "Error: AIDHUB_DATABASE_URL: Database URL 'mysql://x' is not supported: "
        "use sqlite:///PATH or postgresql://USER@HOST/DB.\n"
    )
    log = (tmp_path / "logs" / "hub.log").read_text()
    assert "INFO cli.supervisor: The hub's supervisor did not start: AIDHUB_DATABASE_URL" in log


def test_workers_below_one_is_refused(tmp_path):
    env = {**os.environ, "AIDHUB_HOME": str(tmp_path)}
    done = subprocess.run([AID, "serve", "--workers", "0"], capture_output=True, text=True, env=env)
    assert done.returncode == 2
    assert "Invalid value for '--workers': 0 is not in the range x>=1." in done.stderr


def test_two_workers_on_the_container_runner_build_once_serve_and_undeploy(tmp_path, engine, docker_host):
    """The supervisor builds the image and starts the container; a web worker routes to it and stops
    it through the engine when undeployed."""
    env = {"DOCKER_HOST": docker_host}
    hub = HubProcess(tmp_path / "home", runner="container", extra_env=env, workers=2).start()
    label = {"label": "aidhub.model=boxes"}
    try:
        done = hub.aid("publish", str(onnx_package(tmp_path / "pkg", name="boxes")), "--deploy")
        assert done.returncode == 0, done.stdout + done.stderr
        assert len(engine.containers.list(filters=label)) == 1
        codes = [
            httpx.post(f"{hub.url}/api/v1/models/boxes/predict", json=CALL).status_code for _ in range(10)
        ]
        assert codes == [200] * 10
        assert metric(hub, PREDICTIONS.replace("doubler", "boxes")) == 10
        undone = httpx.post(f"{hub.url}/api/v1/models/boxes/undeploy", headers=hub.headers, timeout=60)
        assert undone.json()["deployment"]["status"] == "stopped"
        assert engine.containers.list(all=True, filters=label) == []
    finally:
        hub.undeploy_all()
        hub.stop()
