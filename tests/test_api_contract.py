"""The HTTP contract: the OpenAPI document covers every route, and every error has one JSON shape.

One real Hub per module and backend (SQLite, then PostgreSQL) with two real packages: `doubler`
(deployed once, through the process runner, for the cases that need a running model) and `idle`
(published, never deployed). The `app` and `client` fixtures (conftest.py) serve this module's hub.
"""

from __future__ import annotations

import json
import struct
import time
from collections.abc import Callable
from dataclasses import dataclass, field

import pytest

from tests.conftest import admin_client
from tests.packages import archive, onnx_package
from vocab.states import BUILD_STEPS, FINAL, BuildStatus, DeploymentStatus, StepStatus
from web.openapi import PREFIXES, openapi_path, operations

UPLOAD_LIMIT = 4096  # the tiny packages are under 1 KiB
ERROR_KEYS = ["ok", "error", "errors", "status"]
V2_BODY = {"inputs": [{"name": "x", "shape": [1, 2], "datatype": "FP32", "data": [1.0, 2.0]}]}
# The Open Inference Protocol answers "model not ready" with a 4xx and its own {"name", "ready"} body.
PROTOCOL_REPLIES = {("/v2/models/{name}/ready", "400"), ("/v2/models/{name}/versions/{version}/ready", "400")}
BUILD_SECONDS = 300


@pytest.fixture(scope="module")
def hub(open_hub, module_database_url, tmp_path_factory):
    root = tmp_path_factory.mktemp("contract")
    hub = open_hub(root / "home", module_database_url, max_version_bytes=UPLOAD_LIMIT)
    hub.publish(archive(onnx_package(root / "doubler")))
    hub.publish(archive(onnx_package(root / "idle", name="idle")))
    yield hub
    hub.undeploy("doubler")
    hub.close()


def wait_for_build(hub, build_id: int, timeout: float = BUILD_SECONDS) -> dict:
    deadline = time.monotonic() + timeout
    while (build := hub.build(build_id))["status"] not in FINAL:
        assert time.monotonic() < deadline, f"build {build_id} still {build['status']} after {timeout}s"
        time.sleep(0.2)
    return build


@pytest.fixture(scope="module")
def deployed(hub):
    """`doubler` served by a real model server (the process runner, with the shared test caches)."""
    build = wait_for_build(hub, hub.deploy("doubler")["build"]["id"])
    assert build["status"] == BuildStatus.SUCCEEDED, build["log"][-3000:]
    deployment = hub.version("doubler")["deployment"]
    assert deployment["status"] == DeploymentStatus.READY, deployment["error"]
    return hub


@pytest.fixture
def document(client):
    reply = client.get("/api/v1/openapi.json")
    assert (reply.status_code, reply.content_type) == (200, "application/json")
    return json.loads(reply.data)


# --- the OpenAPI document ------------------------------------------------------------------------


def routed(app) -> set[tuple[str, str]]:
    rules = [r for r in app.url_map.iter_rules() if r.rule == "/v2" or r.rule.startswith(PREFIXES)]
    return {(openapi_path(r.rule), m.lower()) for r in rules for m in r.methods - {"HEAD", "OPTIONS"}}


def test_openapi_document_describes_every_api_and_v2_route(app, document):
    documented = {(path, method) for path, methods in document["paths"].items() for method in methods}
    undocumented = sorted(
        (path, method) for path, methods in document["paths"].items()
        for method, operation in methods.items() if operation.get("x-undocumented")
    )  # fmt: skip
    assert document["openapi"] == "3.1.0"
    assert routed(app) == documented
    assert undocumented == [], "describe these routes in web/openapi.py"
    assert {(p, m.lower()) for p, m in operations()} == documented, "web/openapi.py describes a gone route"


def test_openapi_path_turns_flask_arguments_into_templates():
    assert openapi_path("/api/v1/models/<path:name>/versions/<ref>") == "/api/v1/models/{name}/versions/{ref}"
    assert openapi_path("/api/v1/builds/<int:build_id>") == "/api/v1/builds/{build_id}"


def test_every_path_argument_is_a_documented_parameter(document):
    for path, methods in document["paths"].items():
        for method, operation in methods.items():
            names = {p["name"] for p in operation["parameters"] if p["in"] == "path"}
            assert names == set(arguments(path)), (path, method)


def arguments(path: str) -> list[str]:
    return [part[1:-1] for part in path.split("/") if part.startswith("{")]


def test_every_error_response_is_the_error_schema(document):
    error = {"$ref": "#/components/schemas/Error"}
    for path, methods in document["paths"].items():
        for method, operation in methods.items():
            for status, response in operation["responses"].items():
                if status[0] in "45" and (path, status) not in PROTOCOL_REPLIES:
                    assert response["content"]["application/json"]["schema"] == error, (path, method, status)
    assert document["components"]["schemas"]["Error"]["required"] == ERROR_KEYS


def test_every_schema_reference_resolves(document):
    schemas = document["components"]["schemas"]
    refs = set(references(document))
    assert refs, "the document references no schema"
    assert {r.removeprefix("#/components/schemas/") for r in refs} <= set(schemas)


def references(node):
    if isinstance(node, dict):
        yield from [node["$ref"]] if "$ref" in node else []
        for value in node.values():
            yield from references(value)
    elif isinstance(node, list):
        for value in node:
            yield from references(value)


def test_predict_reply_has_the_documented_fields_and_header(deployed, client, document):
    reply = client.post("/api/v1/models/doubler/predict", json={"inputs": {"x": [[1.0, 2.0]]}})
    body = reply.get_json()
    assert reply.status_code == 200, body
    assert list(body) == document["components"]["schemas"]["Prediction"]["required"]
    assert (body["model"], body["version"], body["outputs"]) == ("doubler", "1.0.0", {"y": [[2.0, 4.0]]})
    assert reply.headers["X-Prediction-Id"] == body["id"]


# --- every endpoint into an error ------------------------------------------------------------------


@dataclass(frozen=True)
class Case:
    method: str
    url: str
    status: int
    says: str  # a distinctive part of `error`
    body: Callable = lambda tmp: {}  # tmp folder -> keyword arguments of client.open
    errors: list[str] = field(default_factory=list)
    deployed: bool = False


def package(**fields) -> Callable:
    return lambda tmp: {"data": archive(onnx_package(tmp / "upload", **fields)).getvalue()}


def as_json(value) -> Callable:
    return lambda tmp: {"json": value}


def raw(data: bytes | str, content_type: str = "application/json") -> Callable:
    return lambda tmp: {"data": data, "content_type": content_type}


PREDICT = "/api/v1/models/doubler/predict"
CASES = {
    "unknown-model": Case(
        "GET", "/api/v1/models/iris", 404, "Model 'iris' does not exist. Models: doubler, idle."
    ),
    "unknown-version": Case(
        "GET", "/api/v1/models/doubler/versions/9.0.0", 404,
        "Model 'doubler' has no version or alias '9.0.0'. Versions: 1.0.0. Aliases: latest.",
    ),
    "upload-too-large": Case(
        "POST", "/api/v1/models", 413, f"upload of {UPLOAD_LIMIT + 1:,} bytes is larger than the limit of "
        f"{UPLOAD_LIMIT:,} bytes", raw(b"\0" * (UPLOAD_LIMIT + 1), "application/gzip"),
    ),
    "invalid-package": Case(
        "POST", "/api/v1/models", 400, "The package is invalid.", package(name="Bad Name"),
        ["name: 'Bad Name' is not valid: use lower-case letters, digits and '-', e.g. iris-classifier"],
    ),
    "republish-other-content": Case(
        "POST", "/api/v1/models", 409, "doubler@1.0.0 is already published", package(card="# other\n")
    ),
    "alias-bad-name": Case(
        "PUT", "/api/v1/models/doubler/aliases/Prod!", 400, "Alias 'Prod!' is not valid",
        as_json({"version": "1.0.0"}),
    ),
    "alias-latest": Case(
        "PUT", "/api/v1/models/doubler/aliases/latest", 400, "Alias 'latest' is kept by the hub",
        as_json({"version": "1.0.0"}),
    ),
    "alias-without-version": Case(
        "PUT", "/api/v1/models/doubler/aliases/production", 400, 'Say which version the alias points to',
        as_json({}),
    ),
    "alias-unknown-version": Case(
        "PUT", "/api/v1/models/doubler/aliases/production", 404, "no version or alias '7.7.7'",
        as_json({"version": "7.7.7"}),
    ),
    "deploy-unknown-model": Case("POST", "/api/v1/models/iris/deploy", 404, "Model 'iris' does not exist"),
    "undeploy-unknown-version": Case(
        "POST", "/api/v1/models/doubler/undeploy?version=9.0.0", 404, "no version or alias '9.0.0'"
    ),
    "unknown-build": Case("GET", "/api/v1/builds/999", 404, "Build 999 does not exist."),
    "logs-unknown-model": Case("GET", "/api/v1/models/iris/logs", 404, "Model 'iris' does not exist"),
    "predict-bad-json": Case(
        "POST", PREDICT, 400, "The request body must be a JSON object", raw("{not json")
    ),
    "predict-not-deployed": Case(
        "POST", "/api/v1/models/idle/predict", 503,
        "idle@1.0.0 is not deployed. Run 'aid deploy idle@1.0.0' first.",
        as_json({"inputs": {"x": [[1.0, 2.0]]}}),
    ),
    "predict-unknown-version": Case(
        "POST", "/api/v1/models/doubler@9.0.0/predict", 404, "no version or alias '9.0.0'",
        as_json({"inputs": {"x": [[1.0, 2.0]]}}),
    ),
    "predict-inputs-off-schema": Case(
        "POST", PREDICT, 422, "The inputs do not fit doubler@1.0.0's schema; the model was not called.",
        as_json({"inputs": {"z": [[1.0, 2.0]]}}),
        ["inputs.x: missing (float32 with shape [-1, 2])", "inputs.z: unknown input; expected x"],
        deployed=True,
    ),
    "feedback-unknown-prediction": Case(
        "POST", "/api/v1/predictions/01NOSUCHID/feedback", 404, "Prediction '01NOSUCHID' does not exist",
        as_json({"rating": 5}),
    ),
    "feedback-bad-rating": Case(
        "POST", "/api/v1/models/doubler/feedback", 400, "rating: must be a whole number from 1 to 5, not 9.",
        as_json({"rating": 9}),
    ),
    "feedback-unknown-field": Case(
        "POST", "/api/v1/models/doubler/feedback", 400, "Unknown feedback field(s) stars",
        as_json({"stars": 5}),
    ),
    "feedback-unknown-model": Case(
        "POST", "/api/v1/models/iris/feedback", 404, "Model 'iris' does not exist", as_json({"rating": 5})
    ),
    "scorecard-unknown-version": Case(
        "GET", "/api/v1/models/doubler/scorecard?version=2.0.0", 404, "no version or alias '2.0.0'"
    ),
    "v2-metadata-unknown-version": Case(
        "GET", "/v2/models/doubler/versions/9.0.0", 404, "no version or alias '9.0.0'"
    ),
    "v2-ready-unknown-model": Case("GET", "/v2/models/iris/ready", 404, "Model 'iris' does not exist"),
    "v2-infer-unknown-model": Case(
        "POST", "/v2/models/iris/infer", 404, "Model 'iris' does not exist", as_json(V2_BODY)
    ),
    "v2-infer-malformed": Case(
        "POST", "/v2/models/doubler/infer", 400, "The inference request is not valid JSON", raw("{oops")
    ),
    "v2-infer-inputs-not-a-list": Case(
        "POST", "/v2/models/doubler/infer", 400, '"inputs" must be a list', as_json({"inputs": {}})
    ),
    "v2-infer-not-deployed": Case(
        "POST", "/v2/models/idle/infer", 503, "idle@1.0.0 is not deployed", as_json(V2_BODY)
    ),
    "unknown-url": Case("GET", "/api/v1/nope", 404, "GET /api/v1/nope: The requested URL was not found"),
    "wrong-method": Case("DELETE", "/api/v1/models/doubler", 405, "DELETE /api/v1/models/doubler: The"),
}  # fmt: skip


def case_params() -> list:
    return [pytest.param(case, id=name) for name, case in CASES.items()]


@pytest.mark.parametrize("case", case_params())
def test_every_error_is_one_json_shape_that_names_the_value(case, request, client, tmp_path):
    if case.deployed:
        request.getfixturevalue("deployed")
    reply = client.open(case.url, method=case.method, **case.body(tmp_path))
    body = reply.get_json()
    assert (reply.status_code, reply.content_type) == (case.status, "application/json"), reply.data
    assert list(body) == ERROR_KEYS
    assert (body["ok"], body["status"]) == (False, case.status)
    assert isinstance(body["error"], str) and all(isinstance(e, str) for e in body["errors"])
    assert case.says in body["error"]
    assert body["errors"] == case.errors


@pytest.mark.parametrize("path", ["fast path", "flask view"])
@pytest.mark.usefixtures("deployed")
def test_predict_answers_the_same_through_the_fast_path_and_the_flask_view(app, path):
    if path == "flask view":
        app.wsgi_app = app.wsgi_app.app  # unwrap PredictFastPath
    client = admin_client(app)
    ok = client.post("/api/v1/models/doubler/predict?version=1.0.0", json={"inputs": {"x": [[1.0, 2.0]]}})
    assert ok.status_code == 200 and ok.headers["X-Prediction-Id"] == ok.json["id"]
    assert (ok.json["version"], ok.json["outputs"]) == ("1.0.0", {"y": [[2.0, 4.0]]})
    bad = client.post("/api/v1/models/doubler@9.9.9/predict", data=b"{}")
    assert bad.status_code == 404 and bad.json["error"].startswith(
        "Model 'doubler' has no version or alias '9.9.9'"
    )
    broken = client.post("/api/v1/models/doubler/predict", data=b"not json")
    assert broken.status_code == 400 and broken.json["error"].startswith(
        "The request body must be a JSON object"
    )


# --- what each use case answers ----------------------------------------------------------------------


def test_document_states_are_the_vocabulary(document):
    schemas = document["components"]["schemas"]
    build = schemas["Build"]["properties"]
    step = build["steps"]["items"]["properties"]
    assert schemas["Deployment"]["properties"]["status"]["enum"] == list(DeploymentStatus)
    assert build["status"]["enum"] == list(BuildStatus)
    assert (step["name"]["enum"], step["status"]["enum"]) == (list(BUILD_STEPS), list(StepStatus))


def test_republishing_the_same_package_is_200_and_not_created(client, tmp_path):
    reply = client.post("/api/v1/models", data=archive(onnx_package(tmp_path / "doubler")).getvalue())
    assert reply.status_code == 200, reply.json
    assert (reply.json["model"], reply.json["version"], reply.json["created"]) == ("doubler", "1.0.0", False)


TENSOR_X = {"name": "x", "datatype": "FP32", "shape": [-1, 2]}
TENSOR_Y = {"name": "y", "datatype": "FP32", "shape": [-1, 2]}


@pytest.mark.parametrize("url", ["/v2/models/idle", "/v2/models/idle/versions/1.0.0"])
def test_v2_metadata_names_the_versions_platform_and_tensors(client, url):
    reply = client.get(url)
    assert reply.status_code == 200, reply.json
    assert reply.json == {
        "name": "idle", "versions": ["1.0.0"], "platform": "aidhub_onnx",
        "inputs": [TENSOR_X], "outputs": [TENSOR_Y],
    }  # fmt: skip


def test_v2_ready_is_a_400_until_the_version_serves(client):
    reply = client.get("/v2/models/idle/ready")
    assert (reply.status_code, reply.json) == (400, {"name": "idle", "ready": False})


@pytest.mark.usefixtures("deployed")
@pytest.mark.parametrize("url", ["/v2/models/doubler/ready", "/v2/models/doubler/versions/1.0.0/ready"])
def test_v2_ready_is_200_for_a_serving_version(client, url):
    reply = client.get(url)
    assert (reply.status_code, reply.json) == (200, {"name": "doubler", "ready": True})


@pytest.mark.usefixtures("deployed")
def test_v2_infer_as_json_types_outputs_by_the_versions_schema(client):
    reply = client.post("/v2/models/doubler/infer", json={**V2_BODY, "id": "call-1"})
    assert reply.status_code == 200, reply.json
    y = {"name": "y", "datatype": "FP32", "shape": [1, 2], "data": [2.0, 4.0]}
    assert reply.json == {"model_name": "doubler", "model_version": "1.0.0", "id": "call-1", "outputs": [y]}
    assert reply.headers["X-Prediction-Id"]


@pytest.mark.usefixtures("deployed")
def test_v2_infer_returns_binary_outputs_when_asked(client):
    body = {**V2_BODY, "outputs": [{"name": "y", "parameters": {"binary_data": True}}]}
    reply = client.post("/v2/models/doubler/infer", json=body)
    assert (reply.status_code, reply.content_type) == (200, "application/octet-stream"), reply.data[:500]
    split = int(reply.headers["Inference-Header-Content-Length"])
    header, blob = json.loads(reply.data[:split]), reply.data[split:]
    y = {"name": "y", "datatype": "FP32", "shape": [1, 2], "parameters": {"binary_data_size": 8}}
    assert header["outputs"] == [y]
    assert struct.unpack("<2f", blob) == (2.0, 4.0)


def predictions_served(client) -> float:
    reply = client.get("/metrics")
    assert reply.status_code == 200 and reply.content_type.startswith("text/plain"), reply.data[:500]
    line = 'aidhub_predictions_total{model="doubler",source="hub",status="ok",version="1.0.0"} '
    found = [row for row in reply.get_data(as_text=True).splitlines() if row.startswith(line)]
    return float(found[0].removeprefix(line)) if found else 0.0


@pytest.mark.usefixtures("deployed")
def test_metrics_count_each_prediction(client):
    before = predictions_served(client)
    reply = client.post("/api/v1/models/doubler/predict", json={"inputs": {"x": [[1.0, 2.0]]}})
    assert reply.status_code == 200, reply.json
    assert predictions_served(client) == before + 1


def test_the_compare_page_runs_one_input_through_a_served_version_and_one_that_is_not(client, deployed):
    form = {"a": "doubler@1.0.0", "b": "idle@1.0.0", "inputs": '{"x": [[1.0, 2.0]]}'}
    page = client.post("/compare", data=form).get_data(as_text=True)
    served, idle = page.split('id="answer-0"')[1].split('id="answer-1"')
    assert "{&#34;y&#34;: [[2.0, 4.0]]}" in served and " ms · prediction " in served
    assert "is not deployed" in idle
