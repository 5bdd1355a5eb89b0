"""Drift runs end to end: a real hub serving the iris example, real calls with two columns shifted,
Evidently in its child process, the stored run on the API, the scorecard, the CLI and the page."""

from __future__ import annotations

import csv
import json
from pathlib import Path

import httpx
import pytest

from tests.hubserver import HubProcess
from tests.packages import archive

REPO = Path(__file__).resolve().parent.parent
IRIS = REPO / "examples" / "iris-onnx"
SHIFTED = {2: 3.0, 3: 1.5}  # petal length and width, in cm: as if another instrument measured them
HEAVY_LIBRARIES = ("evidently", "pandas", "scipy")


def reference_rows() -> list[list[float]]:
    with (IRIS / "reference.csv").open(newline="") as f:
        return [[float(row[f"features.{i}"]) for i in range(4)] for row in csv.DictReader(f)]


@pytest.fixture(scope="module")
def hub(tmp_path_factory):
    server = HubProcess(tmp_path_factory.mktemp("drift")).start()
    deployed = server.aid("publish", str(IRIS), "--deploy", timeout=600)
    assert deployed.returncode == 0, deployed.stdout + deployed.stderr
    yield server
    server.undeploy_all()
    server.stop()


def predict(hub: HubProcess, features: list[float]) -> None:
    reply = httpx.post(
        f"{hub.url}/api/v1/models/iris-onnx/predict", json={"inputs": {"features": [features]}}
    )
    assert reply.status_code == 200, reply.text


def test_too_few_calls_is_a_clear_answer_not_a_verdict(hub):
    reply = httpx.post(
        f"{hub.url}/api/v1/models/iris-onnx/drift", json={"window": "1h"}, headers=hub.headers, timeout=60
    )
    assert reply.status_code == 400
    assert reply.json()["error"] == (
        "iris-onnx@1.0.0 has 0 logged calls in the last 1 hour; at least 30 are needed for a drift run. "
        "Widen --window or send more calls."
    )


def test_a_window_that_is_not_a_duration_names_the_forms_that_work(hub):
    result = hub.aid("drift", "iris-onnx", "--window", "yesterday")
    assert result.returncode == 2
    assert result.stderr.strip() == (
        "Error: Window 'yesterday' is not a duration; write minutes, hours or days, e.g. 90m, 24h or 7d."
    )


def test_shifted_columns_and_only_they_drift(hub):
    for row in reference_rows():
        predict(hub, [value + SHIFTED.get(i, 0.0) for i, value in enumerate(row)])
    result = hub.aid("drift", "iris-onnx", "--json", timeout=300)
    assert result.returncode == 0, result.stdout + result.stderr
    run = json.loads(result.stdout)
    assert (run["status"], run["reference"], run["error"]) == ("done", "package", None)
    verdicts = {c["column"]: c["drifted"] for c in run["inputs"]["columns"]}
    assert verdicts == {"features.0": False, "features.1": False, "features.2": True, "features.3": True}
    assert run["inputs"]["share"] == 0.5 and run["inputs"]["rows"]["current"] == len(reference_rows())
    assert run["outputs"] is not None  # the model's answers on the reference rows, against the live ones
    assert any(c["drifted"] for c in run["outputs"]["columns"] if c["column"] == "label")

    card = httpx.get(f"{hub.url}/api/v1/models/iris-onnx/scorecard").json()["drift"]
    assert (card["run"], card["share"], card["columns"]) == (run["id"], 0.5, verdicts)
    metrics = httpx.get(f"{hub.url}/metrics").text
    assert 'aidhub_drift_share_ratio{model="iris-onnx",version="1.0.0"} 0.5' in metrics
    assert 'aidhub_deployment_up{model="iris-onnx",version="1.0.0"} 1.0' in metrics
    built = 'aidhub_build_duration_seconds_count{model="iris-onnx",status="succeeded",version="1.0.0"} 1.0'
    assert built in metrics
    assert 'aidhub_drift_columns_drifted{model="iris-onnx",version="1.0.0"} 2.0' in metrics
    history = httpx.get(f"{hub.url}/api/v1/models/iris-onnx/drift").json()
    assert history["latest"]["id"] == run["id"] and [r["id"] for r in history["runs"]][0] == run["id"]


def test_the_report_is_served_sandboxed_and_the_page_links_it(hub):
    run = httpx.get(f"{hub.url}/api/v1/models/iris-onnx/drift").json()["latest"]
    assert run is not None, "test_shifted_columns_and_only_they_drift runs first"
    page = httpx.get(f"{hub.url}/models/iris-onnx").text
    link = f"/models/iris-onnx/drift/{run['id']}/report"
    assert link in page and '<li class="drifted">features.2:' in page
    report = httpx.get(f"{hub.url}{link}")
    assert report.status_code == 200 and "<html" in report.text.lower()
    assert report.headers["Content-Security-Policy"].startswith("sandbox allow-scripts;")
    assert httpx.get(f"{hub.url}/models/iris-onnx/drift/99999/report").status_code == 404


def test_the_hub_process_never_loads_evidently(hub):
    """After drift runs, the gunicorn worker that serves the hub has none of Evidently's stack mapped."""
    assert httpx.get(f"{hub.url}/api/v1/models/iris-onnx/drift").json()["latest"] is not None
    worker = next(pid for pid in children(hub.proc.pid))
    maps = Path(f"/proc/{worker}/maps").read_text()
    assert "gevent" in maps  # the map is the serving process's
    assert [lib for lib in HEAVY_LIBRARIES if f"/{lib}/" in maps] == []


def children(pid: int) -> list[int]:
    found = []
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        if int(fields[1]) == pid:
            found.append(int(stat.parent.name))
    return found


def test_the_schedule_runs_drift_for_a_serving_version_once_it_is_due(open_hub, tmp_path):
    hub = open_hub(tmp_path / "home", f"sqlite:///{tmp_path}/hub.db", drift_every_seconds=3600.0)
    try:
        hub.publish(archive(IRIS))
        build = hub.deploy("iris-onnx")["build"]
        assert hub.deployments.wait(build["id"]).status == "succeeded"
        for row in reference_rows()[:40]:
            hub.predict("iris-onnx", None, {"features": [row]})
        assert hub.predlog.flush()
        assert [v.version for v in hub.drift_schedule.check()] == ["1.0.0"]
        assert hub.drift_schedule.check() == []  # not due again before an hour or 1,000 more calls
        run = hub.drift_history("iris-onnx")["latest"]
        assert (run["status"], run["inputs"]["rows"]["current"], run["share"]) == ("done", 40, 0.0)
    finally:
        hub.undeploy("iris-onnx")
        hub.close()
