"""The OpenAPI 3.1 document of /api/v1 and /v2: paths from the app's url_map, details from OPERATIONS.

A route that is registered but not described here still appears in the document, marked
`x-undocumented`, and tests/test_api_contract.py fails until it is described.
"""

from __future__ import annotations

import re

from flask import Flask

PREFIXES = ("/api/v1", "/v2")
IGNORED_METHODS = {"HEAD", "OPTIONS"}
RULE_ARGUMENT = re.compile(r"<(?:(\w+)(?:\([^)]*\))?:)?(\w+)>")
CONVERTER_TYPES = {"int": "integer", "float": "number"}
ERROR_TEXT = {
    400: "The request is invalid; `error` says what to fix.",
    404: "The model, version, build or prediction does not exist; `error` lists what does.",
    409: "It conflicts with what is stored: a version published with other content, or a build that ended.",
    413: "The upload is larger than the hub's limit.",
    422: "The inputs do not fit the model's schema; `errors` names each field.",
    500: "Unexpected server error.",
    502: "The model's server failed or did not answer.",
    503: "The model is not deployed or not ready; run `aid deploy`.",
}
KINDS = {
    "string": {"type": "string"},
    "text": {"type": ["string", "null"]},
    "integer": {"type": "integer"},
    "float": {"type": "number"},
    "number": {"type": ["number", "null"]},
    "boolean": {"type": "boolean"},
    "object": {"type": "object"},
    "time": {"type": ["string", "null"], "format": "date-time"},
}
PATH_PARAMETERS = {
    "name": "Model name (may contain '/'). Where the operation takes `?version=`, `name@ref` works too.",
    "ref": "A version number such as 1.0.0, or an alias such as production.",
    "alias": "Alias name: lower-case letters, digits and '-'; 'latest' is kept by the hub.",
    "build_id": "Build id, as returned by deploy.",
    "prediction_id": "The `id` of a predict reply (also its X-Prediction-Id header).",
    "version": "A version number or an alias.",
    "task": "A task such as text-classification (normalised like the manifest's task).",
}


# --- schema helpers ------------------------------------------------------------------------------


def ref(name: str) -> dict:
    return {"$ref": f"#/components/schemas/{name}"}


def typed(kind: str, nullable: bool = False, **extra) -> dict:
    return {"type": [kind, "null"] if nullable else kind, **extra}


def obj(properties: dict, required: list[str] | None = None, **extra) -> dict:
    keys = list(properties) if required is None else required
    return {"type": "object", "properties": properties, "required": keys, **extra}


def array(items: dict) -> dict:
    return {"type": "array", "items": items}


def extend(base: str, properties: dict) -> dict:
    return {"allOf": [ref(base), obj(properties)]}


def json_content(schema: dict) -> dict:
    return {"application/json": {"schema": schema}}


# --- components ----------------------------------------------------------------------------------


def error_schema() -> dict:
    return obj(
        {
            "ok": {"const": False},
            "error": typed("string", description="What went wrong and what to do next."),
            "errors": array(typed("string")) | {"description": "Each problem, named by field."},
            "status": typed("integer", description="The HTTP status, repeated."),
        },
        additionalProperties=False,
    )


def fields(**kinds: str) -> dict:
    """fields(string="model version", time="created_at") -> {"model": {"type": "string"}, ...}."""
    return {name: KINDS[kind] for kind, names in kinds.items() for name in names.split()}


def catalog_schemas() -> dict:
    tensors, strings = {"type": "object", "additionalProperties": ref("TensorSpec")}, array(typed("string"))
    status = typed(
        "string", description="not deployed, starting, ready, unhealthy, failed, stopping, stopped"
    )
    deployment = fields(text="url runner env_key error", integer="restarts", time="updated_at")
    version = fields(string="model version digest task framework", integer="size", time="created_at")
    summary = fields(string="name task summary", text="latest production shown", time="updated_at")
    return {
        "TensorSpec": obj({"dtype": typed("string"), "shape": array(typed("integer"))}, ["dtype"]),
        "Deployment": obj({"status": status, **deployment}, ["status"]),
        "Version": obj(
            version
            | {"aliases": strings, "inputs": tensors, "outputs": tensors, "labels": strings}
            | {"deployment": ref("Deployment")}
        ),
        "VersionDetail": extend(
            "Version", fields(object="manifest", string="card") | {"examples": array({})}
        ),
        "Published": extend("Version", {"created": typed("boolean", description="false: same digest")}),
        "ModelSummary": obj(summary | {"tags": strings, "deployment": ref("Deployment")}),
        "Model": extend(
            "ModelSummary",
            {
                "aliases": typed("object", additionalProperties=typed("string")),
                "versions": array(ref("Version")),
            },
        ),
        "ModelList": obj({"models": array(ref("ModelSummary"))}),
        "AliasRequest": obj(
            {
                "version": typed("string", description="A version or another alias."),
                "retire": typed("boolean", description="Stop the version the alias leaves (default false)."),
            },
            required=["version"],
        ),
    }


def deployment_schemas() -> dict:
    build = fields(integer="id", string="model version", time="created_at started_at finished_at")
    step = obj(
        {
            "name": typed("string", description="queued, environment, start, smoke test"),
            "status": typed("string", description="running, done, failed, cancelled"),
            "seconds": KINDS["number"],
        }
    )
    progress = obj({"done": KINDS["integer"], "total": KINDS["integer"], "step": KINDS["text"]})
    build |= {
        "seconds": KINDS["number"],
        "status": typed("string", description="queued, running, cancelling, succeeded, failed, cancelled"),
        "steps": array(step),
        "progress": progress,
        "alias": typed("string", True, description="Moves to this version when the build succeeds."),
    }
    status = fields(string="runner runner_reason database home")
    status["deployments"] = typed("object", additionalProperties=typed("integer"))
    status["queue"] = obj(fields(string="storage", integer="pending workers"))
    logs = fields(string="model version server_log") | {
        "build": {"oneOf": [ref("BuildWithLog"), typed("null")]}
    }
    return {
        "Build": obj(build),
        "BuildWithLog": extend("Build", fields(string="log")),
        "Deploying": extend("Version", {"build": ref("Build")}),
        "AliasChange": {
            "allOf": [
                ref("Version"),
                obj(
                    {
                        "alias": KINDS["string"],
                        "moved": typed("boolean", description="false: it moves when `build` succeeds"),
                        "build": ref("Build"),
                    },
                    required=["alias", "moved"],
                ),
            ]
        },
        "Logs": obj(logs),
        "Status": obj(status),
        "Health": extend("Status", {"ok": {"const": True}}),
    }


def prediction_schemas() -> dict:
    inputs = typed("object", description="Input name -> value, as in the version's `inputs`.")
    prediction = {"id": typed("string", description="Also sent as the X-Prediction-Id header.")}
    prediction |= fields(string="model version", object="outputs", float="latency_ms")
    feedback = fields(integer="id", text="prediction_id label comment", string="model", time="created_at")
    feedback |= {"correct": typed("boolean", nullable=True), "rating": typed("integer", nullable=True)}
    return {
        "PredictRequest": obj({"inputs": inputs}),
        "Prediction": obj(prediction),
        "FeedbackRequest": feedback_request(),
        "Feedback": obj(feedback),
        "Scorecard": obj(scorecard_properties()),
        "Leaderboard": obj(fields(string="task") | {"versions": array(obj(leaderboard_row()))}),
    }


def leaderboard_row() -> dict:
    row = fields(integer="rank requests feedback", string="model version deployment")
    return row | fields(number="error_rate p95_ms accuracy accuracy_low accuracy_high mean_rating")


def feedback_request() -> dict:
    values = {
        "correct": typed("boolean"),
        "label": typed("string", maxLength=200),
        "rating": typed("integer", minimum=1, maximum=5),
        "comment": typed("string", maxLength=2000),
    }
    return obj(values, [], additionalProperties=False, minProperties=1)


def scorecard_properties() -> dict:
    feedback = fields(integer="count correct incorrect ratings", number="mean_rating")
    feedback |= fields(number="accuracy accuracy_low accuracy_high")
    point = fields(time="minute", integer="requests errors", number="p95")
    return fields(string="model version", integer="version_id requests errors", number="error_rate") | {
        "latency_ms": obj(fields(number="p50 p95 p99 mean")),
        "feedback": obj(feedback),
        "series": array(obj(point)),
    }


def v2_schemas() -> dict:
    tensor = fields(string="name datatype") | {"shape": array(typed("integer"))}
    data = obj(tensor | {"data": array({}), "parameters": typed("object")}, list(tensor))
    requested = obj(fields(string="name", object="parameters"), ["name"])
    metadata = fields(string="name platform") | {"versions": array(typed("string"))}
    return {
        "V2Server": obj(fields(string="name version") | {"extensions": array(typed("string"))}),
        "V2Health": obj(fields(boolean="live ready")),
        "V2Tensor": obj(tensor),
        "V2ModelMetadata": obj(
            metadata | {"inputs": array(ref("V2Tensor")), "outputs": array(ref("V2Tensor"))}
        ),
        "V2ModelReady": obj(fields(string="name", boolean="ready")),
        "V2InferRequest": obj(
            fields(string="id", object="parameters") | {"inputs": array(data), "outputs": array(requested)},
            ["inputs"],
        ),
        "V2InferResponse": obj(fields(string="model_name model_version id") | {"outputs": array(data)}),
    }


def components() -> dict:
    schemas = {"Error": error_schema()}
    for part in (catalog_schemas, deployment_schemas, prediction_schemas, v2_schemas):
        schemas |= part()
    return {"schemas": schemas}


# --- operations ----------------------------------------------------------------------------------


def reply(description: str, schema: dict | None = None, headers: dict | None = None) -> dict:
    out = {"description": description}
    if schema is not None:
        out["content"] = json_content(schema)
    return out | ({"headers": headers} if headers else {})


def error_reply(code: int) -> dict:
    return reply(ERROR_TEXT[code], ref("Error"))


def ok(status: int, schema: str) -> tuple[int, dict]:
    return status, reply("OK", ref(schema))


def query(name: str, description: str) -> dict:
    return {
        "name": name,
        "in": "query",
        "required": False,
        "schema": typed("string"),
        "description": description,
    }


VERSION_QUERY = query("version", "Version or alias; wins over `name@ref`. Default: production, else latest.")


def op(
    summary: str, success: tuple, *errors: int, body: dict | None = None, params=(), tag: str = ""
) -> dict:
    """One operation: `success` is (status, reply); every error status replies with Error."""
    status, answer = success
    responses = {str(status): answer} | {str(c): error_reply(c) for c in sorted({*errors, 500})}
    out = {"summary": summary, "tags": [tag] if tag else [], "responses": responses}
    out |= {"parameters": list(params)} if params else {}
    return out | ({"requestBody": body} if body else {})


def json_body(schema: str) -> dict:
    return {"required": True, "content": json_content(ref(schema))}


def package_body() -> dict:
    schema = {"type": "string", "contentMediaType": "application/gzip"}
    text = "The package archive (tar.gz, as 'aid publish' writes it), streamed as the raw body."
    return {"required": True, "description": text, "content": {"application/gzip": {"schema": schema}}}


def catalog_operations() -> dict:
    searches = [query("q", "Text in name or summary."), query("task", "Exact task."), query("tag", "A tag.")]
    return {
        ("/api/v1/models", "POST"): op(
            "Publish a package",
            (201, reply("Published (200 when the same digest was already there)", ref("Published"))),
            400,
            409,
            413,
            body=package_body(),
            tag="catalog",
        ),
        ("/api/v1/models", "GET"): op("Search models", ok(200, "ModelList"), params=searches, tag="catalog"),
        ("/api/v1/models/{name}", "GET"): op("A model, its versions", ok(200, "Model"), 404, tag="catalog"),
        ("/api/v1/models/{name}/versions/{ref}", "GET"): op(
            "A version with its manifest, card and examples", ok(200, "VersionDetail"), 404, tag="catalog"
        ),
        ("/api/v1/models/{name}/aliases/{alias}", "PUT"): op(
            "Point an alias at a version (202: it moves once that version serves)",
            ok(200, "AliasChange"),
            400,
            404,
            body=json_body("AliasRequest"),
            tag="catalog",
        ),
    }


def deployment_operations() -> dict:
    version = [VERSION_QUERY]
    return {
        ("/api/v1/models/{name}/deploy", "POST"): op(
            "Deploy a version (the build runs in the background)",
            ok(202, "Deploying"),
            404,
            params=version,
            tag="deployments",
        ),
        ("/api/v1/models/{name}/undeploy", "POST"): op(
            "Stop a version's server", ok(200, "Version"), 404, params=version, tag="deployments"
        ),
        ("/api/v1/builds/{build_id}", "GET"): op(
            "A build with its log", ok(200, "BuildWithLog"), 404, tag="deployments"
        ),
        ("/api/v1/builds/{build_id}/cancel", "POST"): op(
            "Cancel a queued or running build", ok(202, "BuildWithLog"), 404, 409, tag="deployments"
        ),
        ("/api/v1/models/{name}/logs", "GET"): op(
            "Last build log and server log", ok(200, "Logs"), 404, params=version, tag="deployments"
        ),
        ("/api/v1/health", "GET"): op("Liveness and hub status", ok(200, "Health"), tag="hub"),
        ("/api/v1/status", "GET"): op("Hub status", ok(200, "Status"), tag="hub"),
        ("/api/v1/openapi.json", "GET"): op(
            "This document", (200, reply("OpenAPI 3.1", typed("object"))), tag="hub"
        ),
    }


def prediction_operations() -> dict:
    header = {"X-Prediction-Id": {"description": "The prediction's id.", "schema": typed("string")}}
    feedback = (201, reply("Stored", ref("Feedback")))
    return {
        ("/api/v1/models/{name}/predict", "POST"): op(
            "Predict",
            (200, reply("The model's outputs", ref("Prediction"), header)),
            400,
            404,
            422,
            502,
            503,
            body=json_body("PredictRequest"),
            params=[VERSION_QUERY],
            tag="predict",
        ),
        ("/api/v1/predictions/{prediction_id}/feedback", "POST"): op(
            "Feedback on one prediction", feedback, 400, 404, body=json_body("FeedbackRequest"), tag="predict"
        ),
        ("/api/v1/models/{name}/feedback", "POST"): op(
            "Feedback on a model (or a version)",
            feedback,
            400,
            404,
            body=json_body("FeedbackRequest"),
            params=[VERSION_QUERY],
            tag="predict",
        ),
        ("/api/v1/models/{name}/scorecard", "GET"): op(
            "Requests, errors, latency and feedback of a version",
            (200, reply("OK", ref("Scorecard"))),
            404,
            params=[VERSION_QUERY],
            tag="predict",
        ),
        ("/api/v1/tasks/{task}/leaderboard", "GET"): op(
            "Versions of a task, ranked by the lower bound of feedback accuracy",
            ok(200, "Leaderboard"),
            tag="predict",
        ),
    }


def v2_operations() -> dict:
    ready = (200, reply("Ready", ref("V2ModelReady")))
    not_ready = reply("Not ready (Open Inference Protocol: a 4xx status)", ref("V2ModelReady"))
    infer = (
        200,
        reply(
            "Outputs; application/octet-stream with binary tensors when asked",
            ref("V2InferResponse"),
            {"X-Prediction-Id": {"schema": typed("string")}},
        ),
    )
    out = {
        ("/v2", "GET"): op("Server metadata", ok(200, "V2Server"), tag="v2"),
        ("/v2/health/live", "GET"): op("Server live", ok(200, "V2Health"), tag="v2"),
        ("/v2/health/ready", "GET"): op("Server ready", ok(200, "V2Health"), tag="v2"),
    }
    for base in ("/v2/models/{name}", "/v2/models/{name}/versions/{version}"):
        out[(base, "GET")] = op("Model metadata", ok(200, "V2ModelMetadata"), 404, tag="v2")
        out[(f"{base}/ready", "GET")] = op("Model ready", ready, 404, tag="v2")
        out[(f"{base}/ready", "GET")]["responses"]["400"] = not_ready
        out[(f"{base}/infer", "POST")] = op(
            "Infer", infer, 400, 404, 422, 502, 503, body=json_body("V2InferRequest"), tag="v2"
        )
    return out


def operations() -> dict:
    found = {}
    for part in (catalog_operations, deployment_operations, prediction_operations, v2_operations):
        found |= part()
    return found


# --- the document --------------------------------------------------------------------------------


def openapi_path(rule: str) -> str:
    """'/models/<path:name>/versions/<ref>' -> '/models/{name}/versions/{ref}'."""
    return RULE_ARGUMENT.sub(r"{\2}", rule)


def path_parameters(rule: str) -> list[dict]:
    return [
        {
            "name": name,
            "in": "path",
            "required": True,
            "description": PATH_PARAMETERS.get(name, name),
            "schema": typed(CONVERTER_TYPES.get(converter, "string")),
        }
        for converter, name in RULE_ARGUMENT.findall(rule)
    ]


def routed(app: Flask) -> dict[tuple[str, str], str]:
    """(OpenAPI path, method) -> Flask rule, for every route under PREFIXES."""
    found = {}
    for rule in app.url_map.iter_rules():
        if rule.rule == "/v2" or rule.rule.startswith(tuple(p + "/" for p in PREFIXES)):
            for method in sorted(rule.methods - IGNORED_METHODS):
                found[(openapi_path(rule.rule), method)] = rule.rule
    return found


def undocumented(summary: str) -> dict:
    return {"summary": summary, "x-undocumented": True, "responses": {"500": error_reply(500)}}


def document(app: Flask) -> dict:
    described = operations()
    paths: dict[str, dict] = {}
    for (path, method), rule in sorted(routed(app).items()):
        operation = described.get((path, method)) or undocumented(f"{method} {rule}")
        params = path_parameters(rule) + operation.get("parameters", [])
        paths.setdefault(path, {})[method.lower()] = {**operation, "parameters": params}
    return {
        "openapi": "3.1.0",
        "info": {
            "title": "aidhub",
            "version": "1",
            "description": "Model hub JSON API and Open "
            "Inference Protocol v2. Every error replies with the Error schema.",
        },
        "paths": paths,
        "components": components(),
    }
