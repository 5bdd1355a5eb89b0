"""The operations of the OpenAPI document: what each (path, method) does, takes and replies.

A route registered in the app but missing here still appears in the document (web/openapi.py marks
it `x-undocumented`), and tests/test_api_contract.py fails until it is described.
"""

from __future__ import annotations

from web import catalog_page
from web.openapi_schemas import json_content, obj, ref, typed
from web.requestbodies import NPY_TYPE

ERROR_TEXT = {
    400: "The request is invalid; `error` says what to fix.",
    401: "No token, or one the hub does not know (revoked, expired), where one is needed.",
    403: "The token lacks the scope this needs, or the model belongs to someone else.",
    404: "The model, version, build or prediction does not exist; `error` lists what does.",
    409: "It conflicts with what is stored: a version published with other content, or a build that ended.",
    413: "The upload, body or image is larger than a limit of the hub; `error` names the setting.",
    415: "The body's image type is not read by the hub; send image/png or image/jpeg.",
    422: "The inputs do not fit the model's schema (`errors` names each field), a label is unknown, or "
    "an alias's weights do not add up to 100 or name a version that does not serve.",
    500: "Unexpected server error.",
    502: "The model's server failed or did not answer.",
    503: "The model is not deployed or not ready; run `aid deploy`.",
    507: "The hub's disk has too little free space for the upload; `error` says how much.",
}


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
    text = (
        "The version's file list, each blob uploaded before (as 'aid publish' does; docs/storage.md), "
        "or the whole package as one tar.gz streamed as the raw body."
    )
    content = {"application/json": {"schema": ref("FileList")}, "application/gzip": {"schema": schema}}
    return {"required": True, "description": text, "content": content}


def catalog_operations() -> dict:
    searches = catalog_page.api_parameters(query)  # q, task, framework, tag, gpu, state, sort, page, per_page
    return {
        ("/api/v1/models", "POST"): op(
            "Publish a package",
            (201, reply("Published (200 when the same files were already there)", ref("PublishedFiles"))),
            400,
            409,
            413,
            507,
            body=package_body(),
            tag="catalog",
        ),
        ("/api/v1/models", "GET"): op(
            "Search models", ok(200, "ModelList"), 400, params=searches, tag="catalog"
        ),
        ("/api/v1/models/{name}", "GET"): op("A model, its versions", ok(200, "Model"), 404, tag="catalog"),
        ("/api/v1/models/{name}/versions/{ref}", "GET"): op(
            "A version with its manifest, card and examples", ok(200, "VersionDetail"), 404, tag="catalog"
        ),
        ("/api/v1/models/{name}/aliases/{alias}", "PUT"): op(
            "Point an alias at a version (202: it moves once that version serves), or split its calls "
            "between serving versions by weight (a canary)",
            ok(200, "AliasChange"),
            400,
            404,
            422,
            body=json_body("AliasRequest"),
            tag="catalog",
        ),
        **alias_operations(),
    }


def alias_operations() -> dict:
    promote = obj({"version": typed("string", description="The version that gets every call.")}, ["version"])
    change = obj({"alias": typed("string"), "before": typed("string", True), "after": typed("string"),
                  "by": typed("string", description="alias, promote, rollback, build N, alert rule #N"),
                  "at": typed("string", format="date-time")})  # fmt: skip
    history = obj({"model": typed("string"), "aliases": typed("object"), "weights": typed("object"),
                   "changes": {"type": "array", "items": change}})  # fmt: skip
    return {
        ("/api/v1/models/{name}/aliases", "GET"): op(
            "The model's aliases, the weights of those that split calls, and their latest changes, newest "
            "first (an alert rule's rollback among them)",
            (200, reply("OK", history)), 404, tag="catalog",
        ),
        ("/api/v1/models/{name}/aliases/{alias}/promote", "POST"): op(
            "Send every call through the alias to one version, keeping the assignment it had for a "
            "rollback (202: it moves once that version serves)",
            ok(200, "AliasChange"), 400, 404,
            body={"required": True, "content": json_content(promote)}, tag="catalog",
        ),
        ("/api/v1/models/{name}/aliases/{alias}/rollback", "POST"): op(
            "Put the alias back as it was before its last change (409: nothing to go back to, or a "
            "version of it does not serve)",
            ok(200, "AliasChange"), 400, 404, 409, tag="catalog",
        ),
    }  # fmt: skip


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


def raw(media: str, description: str) -> dict:
    """A body of raw bytes (not JSON) of media type `media`."""
    return {"schema": {"type": "string", "contentMediaType": media, "description": description}}


def predict_body() -> dict:
    """JSON inputs, one .npy tensor, or an image for a model with one image input (web/imagebodies.py)."""
    image = (
        "For a model with one image input ([N, C, H, W] or [N, H, W, C], C 1 or 3, float or uint8): "
        "the image stretched to H x W (bilinear), RGB or grayscale by C, scaled 0..1 for a float input; "
        "X-Image-Input says what was done."
    )
    content = {
        "application/json": {"schema": ref("PredictRequest")},
        NPY_TYPE: raw(NPY_TYPE, "One tensor saved by numpy.save, for a model with one input."),
        "image/png": raw("image/png", image),
        "image/jpeg": raw("image/jpeg", image),
    }
    return {"required": True, "content": content}


PREDICTION_HEADERS = {
    "X-Prediction-Id": {"description": "The prediction's id.", "schema": typed("string")},
    "X-Image-Input": {
        "description": "For an image body: its size and type, whether it was resized, the tensor made.",
        "schema": typed("string"),
    },
}


def prediction_operations() -> dict:
    header = PREDICTION_HEADERS
    feedback = (201, reply("Stored", ref("Feedback")))
    return {
        ("/api/v1/models/{name}/predict", "POST"): op(
            "Predict",
            (200, reply("The model's outputs", ref("Prediction"), header)),
            400,
            404,
            413,
            415,
            422,
            502,
            503,
            body=predict_body(),
            params=[VERSION_QUERY],
            tag="predict",
        ),
        ("/api/v1/predictions/{prediction_id}/feedback", "POST"): op(
            "Feedback on one prediction (one per client: a repeat replaces it)",
            feedback,
            400,
            404,
            422,
            body=json_body("FeedbackRequest"),
            tag="predict",
        ),
        ("/api/v1/models/{name}/feedback", "POST"): op(
            "Feedback on a model (or a version): kept, not counted toward accuracy",
            feedback,
            400,
            404,
            422,
            body=json_body("FeedbackRequest"),
            params=[VERSION_QUERY],
            tag="predict",
        ),
    }


def quality_operations() -> dict:
    return {
        ("/api/v1/models/{name}/scorecard", "GET"): op(
            "Requests, errors, latency and feedback of a version over a window, with a series per step",
            (200, reply("OK", ref("Scorecard"))),
            404,
            422,
            params=[
                VERSION_QUERY,
                query("window", "How far back: e.g. 1h, 24h (default), 7d, 30d, or `all`."),
                query("step", "One point of `series` per step, e.g. 5m, 2h, 1d; default: 48-96 points."),
            ],
            tag="predict",
        ),
        ("/api/v1/models/{name}/drift", "POST"): op(
            "Compare a version's recent inputs and outputs with its reference (Evidently), now",
            (201, reply("The run: done, or failed with its error", ref("DriftRun"))),
            400,
            404,
            body={"required": False, "content": json_content(ref("DriftRequest"))},
            params=[VERSION_QUERY, query("window", "How far back, e.g. 24h (default), 90m, 7d.")],
            tag="monitor",
        ),
        ("/api/v1/models/{name}/drift", "GET"): op(
            "The latest drift run of a version and the ones before it",
            ok(200, "DriftHistory"),
            404,
            params=[VERSION_QUERY],
            tag="monitor",
        ),
        ("/api/v1/tasks/{task}/leaderboard", "GET"): op(
            "Versions of a task, ranked by the lower bound of feedback accuracy",
            ok(200, "Leaderboard"),
            tag="predict",
        ),
    }


BINARY_TENSORS = (
    "The binary tensor data extension: the JSON object (Inference-Header-Content-Length bytes), then "
    "each tensor with `parameters.binary_data_size` as raw little-endian bytes, in order."
)
HEADER_LENGTH = {
    "name": "Inference-Header-Content-Length",
    "in": "header",
    "required": False,
    "schema": typed("integer", minimum=0),
    "description": "With binary inputs: the length of the JSON object that starts the body.",
}


def v2_infer_body() -> dict:
    content = {"application/json": {"schema": ref("V2InferRequest")}}
    return {
        "required": True,
        "content": content | {"application/octet-stream": raw("application/octet-stream", BINARY_TENSORS)},
    }


def v2_infer_reply() -> tuple[int, dict]:
    """JSON, or JSON then bytes when `binary_data_output` or an output's `binary_data` asks."""
    headers = {
        "X-Prediction-Id": {"schema": typed("string")},
        "Inference-Header-Content-Length": {
            "description": "With binary outputs: the length of the JSON object that starts the body.",
            "schema": typed("integer"),
        },
    }
    answer = reply(
        "Outputs; application/octet-stream with binary tensors when asked", ref("V2InferResponse"), headers
    )
    answer["content"]["application/octet-stream"] = raw("application/octet-stream", BINARY_TENSORS)
    return 200, answer


def v2_operations() -> dict:
    ready = (200, reply("Ready", ref("V2ModelReady")))
    not_ready = reply("Not ready (Open Inference Protocol: a 4xx status)", ref("V2ModelReady"))
    infer = v2_infer_reply()
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
            "Infer",
            infer,
            400,
            404,
            413,
            422,
            502,
            503,
            body=v2_infer_body(),
            params=[HEADER_LENGTH],
            tag="v2",
        )
    return out


def alert_operations() -> dict:
    path = "/api/v1/models/{name}/alerts"
    return {
        (path, "GET"): op(
            "A model's alert rules, each rule's state per serving version, and the latest state changes",
            ok(200, "Alerts"),
            404,
            tag="monitor",
        ),
        (path, "POST"): op(
            "Add an alert rule to a model (422 names what is wrong with it)",
            ok(201, "AlertRule"),
            400,
            404,
            422,
            body=json_body("AlertRequest"),
            tag="monitor",
        ),
        (path + "/{rule_id}", "DELETE"): op(
            "Remove an alert rule (its history stays)", (204, reply("Removed")), 404, tag="monitor"
        ),
    }


def operations() -> dict:
    """(path, method) -> the operation, for every route this module describes."""
    from web.openapi_datasets import dataset_operations
    from web.openapi_files import file_operations, token_operations
    from web.openapi_review import review_operations
    from web.openapi_shadow import shadow_operations

    groups = (
        catalog_operations, deployment_operations, prediction_operations, quality_operations, v2_operations,
        alert_operations, file_operations, token_operations, dataset_operations, shadow_operations,
        review_operations,
    )  # fmt: skip
    return {key: operation for group in groups for key, operation in group().items()}
