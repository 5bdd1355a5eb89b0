"""The spine, driven through the CLI against a running hub: publish, deploy, predict, feedback, scorecard."""

import json
import re
import sqlite3
import time
from pathlib import Path

import httpx
import numpy as np
import pytest
import tritonclient.http as triton

from runners.flavors.calls import MAX_REPLY_BYTES
from tests.hubserver import REPO, HubProcess
from tests.packages import onnx_package
from tests.prometheus import PrometheusServer

EXAMPLES = ["iris-onnx", "digits-torch", "wine-python"]
pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def hub(tmp_path_factory):
    server = HubProcess(tmp_path_factory.mktemp("hub")).start()
    yield server
    server.undeploy_all()
    server.stop()


@pytest.fixture(scope="module")
def examples(hub):
    """The bundled examples published and serving (a no-op after test_publish_and_deploy_each_example)."""
    for name in EXAMPLES:
        result = hub.aid("publish", str(REPO / "examples" / name), "--deploy")
        assert result.returncode == 0, result.stderr
    return hub


def examples_of(name: str) -> list[dict]:
    return json.loads((REPO / "examples" / name / "examples.json").read_text())


def wait_for(check, timeout: float = 5.0):
    deadline = time.monotonic() + timeout
    while True:
        value = check()
        if value or time.monotonic() > deadline:
            return value
        time.sleep(0.1)


@pytest.mark.parametrize("name", EXAMPLES)
def test_publish_and_deploy_each_example(hub, name):
    result = hub.aid("publish", str(REPO / "examples" / name), "--deploy")
    assert result.returncode == 0, result.stdout + result.stderr
    assert f"Published {name}@1.0.0 sha256:" in result.stdout
    assert "Ready in" in result.stdout
    again = hub.aid("publish", str(REPO / "examples" / name))
    assert f"Already published (same digest) {name}@1.0.0" in again.stdout


@pytest.mark.usefixtures("examples")
@pytest.mark.parametrize("name", EXAMPLES)
def test_native_predict_through_the_cli_matches_the_examples(hub, name):
    for example in examples_of(name):
        result = hub.aid("predict", name, "--inputs", json.dumps(example["inputs"]), "--json")
        assert result.returncode == 0, result.stderr
        reply = json.loads(result.stdout)
        assert (reply["model"], reply["version"]) == (name, "1.0.0")
        for output, expected in example["outputs"].items():
            assert reply["outputs"][output] == expected


@pytest.mark.usefixtures("examples")
def test_v2_infer_with_a_stock_triton_client(hub):
    client = triton.InferenceServerClient(hub.url.removeprefix("http://"))
    assert client.is_server_live() and client.is_model_ready("iris-onnx")
    meta = client.get_model_metadata("iris-onnx")
    assert meta["inputs"] == [{"name": "features", "datatype": "FP32", "shape": [-1, 4]}]
    features = np.array([[5.1, 3.8, 1.6, 0.2], [7.2, 3.6, 6.1, 2.5]], dtype=np.float32)
    for binary in (True, False):
        tensor = triton.InferInput("features", list(features.shape), "FP32")
        tensor.set_data_from_numpy(features, binary_data=binary)
        outputs = [triton.InferRequestedOutput("label", binary_data=binary)]
        result = client.infer("iris-onnx", [tensor], outputs=outputs)
        assert result.as_numpy("label").tolist() == [0, 2]
        assert result.get_response()["model_version"] == "1.0.0"


@pytest.mark.usefixtures("examples")
def test_v2_infer_as_plain_json(hub):
    body = {
        "inputs": [{"name": "features", "shape": [1, 4], "datatype": "FP32", "data": [5.5, 2.4, 3.7, 1.0]}]
    }
    reply = httpx.post(f"{hub.url}/v2/models/iris-onnx/versions/1.0.0/infer", json=body)
    assert reply.status_code == 200
    outputs = {o["name"]: o for o in reply.json()["outputs"]}
    assert outputs["label"] == {"name": "label", "datatype": "INT64", "shape": [1], "data": [1]}
    assert outputs["probabilities"]["shape"] == [1, 3]
    assert reply.headers["X-Prediction-Id"]


@pytest.mark.usefixtures("examples")
def test_input_that_does_not_fit_is_422_and_the_model_is_not_called(hub):
    before = logged_requests(hub, "wine-python")
    reply = httpx.post(
        f"{hub.url}/api/v1/models/wine-python/predict", json={"inputs": {"features": [[1.0, 2.0]]}}
    )
    assert reply.status_code == 422
    assert reply.json() == {
        "ok": False,
        "error": "The inputs do not fit wine-python@1.0.0's schema; the model was not called.",
        "errors": ["inputs.features: expected float64 with shape [-1, 13], got shape [1, 2]"],
        "status": 422,
    }
    assert logged_requests(hub, "wine-python") == before + 1  # the call that fits, not the refused one


def logged_requests(hub, name: str) -> int:
    """Requests on the scorecard once everything called so far is logged: a call that fits, then
    feedback on it (which writes the calls still queued for the log, in order, before it looks)."""
    fits = httpx.post(f"{hub.url}/api/v1/models/{name}/predict", json={"inputs": {"features": [[1.0] * 13]}})
    assert fits.status_code == 200
    feedback = httpx.post(f"{hub.url}/api/v1/predictions/{fits.json()['id']}/feedback", json={"comment": "-"})
    assert feedback.status_code == 201
    return scorecard(hub, name)["requests"]


def scorecard(hub, name: str) -> dict:
    result = hub.aid("scorecard", name, "--json")
    assert result.returncode == 0, result.stderr
    return json.loads(result.stdout)


@pytest.mark.usefixtures("examples")
def test_feedback_rolls_into_the_scorecard_exactly(hub):
    name = "digits-torch"
    before = scorecard(hub, name)
    example = examples_of(name)[0]
    ids = []
    for _ in range(10):
        reply = json.loads(
            hub.aid("predict", name, "--inputs", json.dumps(example["inputs"]), "--json").stdout
        )
        ids.append(reply["id"])
    verdicts = ["--correct"] * 8 + ["--wrong"] * 2
    for pid, verdict, rating in zip(ids, verdicts, [5, 4, 5, 4, 5, 4, 5, 4, 1, 2], strict=True):
        result = hub.aid("feedback", pid, verdict, "--rating", str(rating))
        assert result.returncode == 0, result.stderr
        assert result.stdout.startswith("Thanks: feedback ")
    card = wait_for(lambda: (c := scorecard(hub, name))["requests"] == before["requests"] + 10 and c)
    assert card["errors"] == 0 and card["error_rate"] == 0.0
    fb = card["feedback"]
    assert (fb["count"], fb["correct"], fb["incorrect"]) == (10, 8, 2)
    assert (round(fb["accuracy_low"], 4), fb["accuracy"], round(fb["accuracy_high"], 4)) == (
        0.4902,
        0.8,
        0.9433,
    )
    assert fb["mean_rating"] == 3.9
    lat = card["latency_ms"]
    assert 0 < lat["p50"] <= lat["p95"] <= lat["p99"]
    metrics = httpx.get(f"{hub.url}/metrics").text
    assert 'aidhub_feedback_total{correct="true",model="digits-torch",version="1.0.0"} 8.0' in metrics
    assert 'aidhub_feedback_total{correct="false",model="digits-torch",version="1.0.0"} 2.0' in metrics
    assert 'aidhub_accuracy_ratio{model="digits-torch",version="1.0.0"} 0.8' in metrics
    assert 'aidhub_deployment_up{model="digits-torch",version="1.0.0"} 1.0' in metrics
    human = hub.aid("scorecard", name).stdout
    assert "accuracy      0.800 (95% CI 0.490-0.943)" in human
    assert "mean rating   3.90" in human


def test_feedback_on_an_unknown_prediction_is_404(hub):
    result = hub.aid("feedback", "nope", "--correct")
    assert result.returncode == 1
    assert "Prediction 'nope' does not exist" in result.stderr


@pytest.mark.usefixtures("examples")
def test_unknown_model_lists_what_exists(hub):
    result = hub.aid("predict", "iris", "-i", "features=[[1,2,3,4]]")
    assert result.returncode == 1
    assert "Model 'iris' does not exist. Models: digits-torch, iris-onnx, wine-python." in result.stderr


def test_invalid_package_exits_2_listing_each_problem(hub, tmp_path):
    root = onnx_package(tmp_path / "bad", name="Bad Name", examples="missing.json")
    result = hub.aid("publish", str(root))
    assert result.returncode == 2
    assert "is not a valid package (2 problems):" in result.stderr
    assert (
        "  - examples: 'missing.json' does not exist in the package; add it or fix the path" in result.stderr
    )


def test_no_hub_answering_is_a_clear_failure():
    result = HubProcess(Path("/nonexistent")).aid("list")
    assert result.returncode == 1
    assert "No hub answers at http://127.0.0.1:" in result.stderr
    assert "Start one with 'aid serve'" in result.stderr


def test_a_failed_build_is_marked_failed_and_the_serving_version_keeps_serving(hub, tmp_path):
    good = onnx_package(tmp_path / "good", name="fragile", version="1.0.0")
    assert hub.aid("publish", str(good), "--deploy").returncode == 0
    bad = onnx_package(
        tmp_path / "bad", name="fragile", version="1.1.0", requirements=["aidhub-no-such-package-x"]
    )
    result = hub.aid("publish", str(bad), "--deploy")
    assert result.returncode == 1
    assert "Build" in result.stderr and "failed" in result.stderr
    detail = json.loads(hub.aid("show", "fragile@1.1.0", "--json").stdout)
    assert detail["deployment"]["status"] == "failed"
    assert "aidhub-no-such-package-x" in detail["deployment"]["error"]
    reply = json.loads(hub.aid("predict", "fragile", "-i", "x=[[1.0, 2.0]]", "--json").stdout)
    assert (reply["version"], reply["outputs"]) == ("1.0.0", {"y": [[2.0, 4.0]]})


@pytest.mark.usefixtures("examples")
def test_list_show_alias_status_and_logs_through_the_cli(hub):
    listing = hub.aid("list", "--task", "tabular-classification").stdout
    assert listing.splitlines()[0].split() == ["NAME", "TASK", "LATEST", "PRODUCTION", "SUMMARY"]
    assert [line.split()[0] for line in listing.splitlines()[2:]] == ["iris-onnx", "wine-python"]
    alias = hub.aid("alias", "iris-onnx", "production", "1.0.0")
    assert alias.stdout == "iris-onnx@production -> 1.0.0\n"
    shown = hub.aid("show", "iris-onnx").stdout
    assert "aliases: latest -> 1.0.0, production -> 1.0.0" in shown
    assert re.search(r"^1\.0\.0 +[0-9a-f]{12} +onnx +ready +http://127\.0\.0\.1:\d+$", shown, re.M)
    status = hub.aid("status").stdout
    assert "runner   process: AIDHUB_RUNNER=process" in status
    assert "builds   0 queued (sqlite), 2 worker(s) in the hub" in status
    logs = hub.aid("logs", "iris-onnx").stdout
    assert logs.startswith("== build ") and "(succeeded, " in logs
    assert "== server log" in logs


def test_a_build_whose_examples_give_other_answers_fails_its_smoke_test(hub, tmp_path):
    root = onnx_package(tmp_path / "liar", name="liar")
    (root / "examples.json").write_text('[{"inputs": {"x": [[1.0, 2.0]]}, "outputs": {"y": [[9.0, 9.0]]}}]')
    result = hub.aid("publish", str(root), "--deploy")
    assert result.returncode == 1
    assert (
        "Smoke test: examples[0] gave a different answer: outputs.y: expected [[9.0, 9.0]], got [[2.0, 4.0]]"
        in (result.stderr)
    )
    detail = json.loads(hub.aid("show", "liar@1.0.0", "--json").stdout)
    assert detail["deployment"]["status"] == "failed"


@pytest.mark.usefixtures("examples")
def test_a_real_prometheus_scrapes_the_hub_and_sees_every_prediction(hub, tmp_path):
    server = PrometheusServer(tmp_path / "prometheus", target=f"127.0.0.1:{hub.port}").start()
    try:
        for _ in range(7):
            httpx.post(
                f"{hub.url}/api/v1/models/wine-python/predict",
                json={"inputs": examples_of("wine-python")[0]["inputs"]},
            )
        expected = _sample(
            httpx.get(f"{hub.url}/metrics").text, 'aidhub_predictions_total{model="wine-python"'
        )
        query = 'sum(aidhub_predictions_total{model="wine-python",status="ok"})'
        seen = wait_for(lambda: (r := server.query(query)) and float(r[0]["value"][1]) == expected and r, 20)
        assert seen and float(seen[0]["value"][1]) == expected >= 7
        assert server.query('up{job="aidhub"}')[0]["value"][1] == "1"
    finally:
        server.stop()


def _sample(text: str, prefix: str) -> float:
    return sum(float(line.rsplit(" ", 1)[1]) for line in text.splitlines() if line.startswith(prefix))


@pytest.mark.parametrize("framework", ["onnx", "torch", "sklearn", "python"])
def test_every_aid_init_starter_deploys_and_answers(hub, tmp_path, framework):
    root = tmp_path / f"starter-{framework}"
    assert hub.aid("init", str(root), "--framework", framework).returncode == 0
    result = hub.aid("publish", str(root), "--deploy")  # the smoke test runs the starter's examples.json
    assert result.returncode == 0, result.stdout + result.stderr
    reply = json.loads(hub.aid("predict", f"starter-{framework}", "-i", "x=[[1.5, 2.5]]", "--json").stdout)
    assert [round(v, 4) for v in reply["outputs"]["y"][0]] == [3.0, 5.0]


# --- calls made straight to a model's server ------------------------------------------------


def server_url(hub, name: str) -> str:
    detail = httpx.get(f"{hub.url}/api/v1/models/{name}/versions/1.0.0").json()
    assert detail["deployment"]["status"] == "ready", detail["deployment"]
    return detail["deployment"]["url"]


def direct_predict(url: str, inputs: dict) -> httpx.Response:
    reply = httpx.post(f"{url}/predict", json={"inputs": inputs})
    assert reply.status_code == 200, reply.text
    return reply


@pytest.mark.usefixtures("examples")
def test_a_call_straight_to_the_server_is_counted_and_takes_feedback(hub):
    name = "wine-python"
    before = scorecard(hub, name)
    example = examples_of(name)[0]
    replies = [direct_predict(server_url(hub, name), example["inputs"]) for _ in range(5)]
    ids = [r.headers["X-Prediction-Id"] for r in replies]
    assert len(set(ids)) == 5 and all(re.fullmatch(r"[0-9A-Z]{26}", i) for i in ids)
    feedback = httpx.post(f"{hub.url}/api/v1/predictions/{ids[0]}/feedback", json={"correct": True})
    assert feedback.status_code == 201, feedback.text  # found at once: feedback collects what waits
    card = wait_for(
        lambda: (c := scorecard(hub, name))["sources"]["direct"] == before["sources"]["direct"] + 5 and c
    )
    assert card, scorecard(hub, name)
    assert card["requests"] == before["requests"] + 5
    assert card["sources"]["hub"] == before["sources"]["hub"]
    assert card["feedback"]["correct"] == before["feedback"]["correct"] + 1
    metrics = httpx.get(f"{hub.url}/metrics").text
    assert re.search(
        r'aidhub_predictions_total\{model="wine-python",source="direct",status="ok",version="1.0.0"\} [1-9]',
        metrics,
    )
    through_hub = httpx.post(f"{hub.url}/api/v1/models/{name}/predict", json={"inputs": example["inputs"]})
    assert through_hub.status_code == 200
    after = wait_for(
        lambda: (c := scorecard(hub, name))["sources"]["hub"] == before["sources"]["hub"] + 1 and c
    )
    assert after and after["sources"]["direct"] == card["sources"]["direct"]  # not counted twice


@pytest.mark.usefixtures("examples")
def test_a_direct_call_is_logged_with_the_inputs_its_body_held(hub):
    """The server keeps the request's body as it came (tabs, newlines, a key it ignores), past the
    log's 16 KiB cap as sent though its inputs are within it; the hub stores the inputs in it."""
    url, inputs = f"{server_url(hub, 'iris-onnx')}/predict", examples_of("iris-onnx")[0]["inputs"]

    def logged(body: str) -> tuple:
        reply = httpx.post(url, content=body, headers={"content-type": "application/json"})
        assert reply.status_code == 200, reply.text
        with sqlite3.connect(hub.home / "hub.db") as db:
            query = "SELECT inputs FROM monitor_prediction WHERE id = ?"
            return wait_for(lambda: db.execute(query, (reply.headers["X-Prediction-Id"],)).fetchone())

    assert logged(json.dumps({"inputs": inputs, "note": "ignored"}, indent="\t")) == (
        json.dumps(inputs, separators=(",", ":")),)  # fmt: skip
    big = json.dumps({"inputs": {"features": [[5.1, 3.5, 1.4, 0.2]] * 400}}, indent="\t")
    assert len(big.replace("\n", "").replace("\t", "")) < 16384 < len(big)  # the body, not its inputs, kept
    assert json.loads(logged(big)[0]) == {"_truncated": True, "bytes": len(big)}


def served(hub, name: str, source: str) -> float:
    """aidhub_predictions_total of the version's ok calls from `source` (0 when none yet)."""
    line = f'aidhub_predictions_total{{model="{name}",source="{source}",status="ok",version="1.0.0"}} '
    found = [r for r in httpx.get(f"{hub.url}/metrics").text.splitlines() if r.startswith(line)]
    return float(found[0].removeprefix(line)) if found else 0.0


@pytest.mark.usefixtures("examples")
def test_direct_calls_made_while_the_hub_is_down_are_counted_once_it_is_back(hub):
    """The servers keep the calls until the restarted hub collects them; its counters go on from
    the totals, not from zero."""
    name = "iris-onnx"
    url, example = server_url(hub, name), examples_of(name)[0]
    assert httpx.post(
        f"{hub.url}/api/v1/models/{name}/predict", json={"inputs": example["inputs"]}
    ).is_success
    before = wait_for(lambda: (c := scorecard(hub, name))["sources"]["hub"] == served(hub, name, "hub") and c)
    assert before, (scorecard(hub, name), served(hub, name, "hub"))
    hub.stop()
    try:
        ids = {direct_predict(url, example["inputs"]).headers["X-Prediction-Id"] for _ in range(300)}
    finally:
        hub.start()
    assert len(ids) == 300
    direct = before["sources"]["direct"] + 300
    card = wait_for(lambda: (c := scorecard(hub, name))["sources"]["direct"] == direct and c, timeout=15)
    assert card, scorecard(hub, name)
    assert served(hub, name, "hub") == before["sources"]["hub"]  # seeded from the rollups at start
    assert wait_for(lambda: served(hub, name, "direct") == direct), served(hub, name, "direct")  # just after


@pytest.mark.usefixtures("examples")
def test_direct_calls_past_one_reply_of_records_all_reach_the_scorecard(hub):
    """A server holding more than one fetch's worth of records (MAX_REPLY_BYTES, 2 MiB) hands them over
    in several replies: 300 calls of ~9 KB inputs made while the hub is down, all counted after."""
    name = "iris-onnx"
    url = server_url(hub, name)
    rows = {"features": [[5.1, 3.5, 1.4, 0.2]] * 500}  # ~9 KB of JSON: logged whole (cap 16 KiB)
    assert 300 * len(json.dumps(rows, separators=(",", ":"))) > 1.2 * MAX_REPLY_BYTES  # two replies at least
    before = scorecard(hub, name)
    hub.stop()
    try:
        for _ in range(300):
            direct_predict(url, rows)
    finally:
        hub.start()
    direct = before["sources"]["direct"] + 300
    card = wait_for(lambda: (c := scorecard(hub, name))["sources"]["direct"] == direct and c, timeout=20)
    assert card, scorecard(hub, name)
