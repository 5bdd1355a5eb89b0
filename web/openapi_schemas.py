"""The schemas of the OpenAPI document (its `components`): what each reply and request body holds.

Pure functions returning JSON Schema dicts; web/openapi_operations.py refers to them by name.
"""

from __future__ import annotations

from hub.listing import GPU_NEEDS
from vocab.alerts import ACTIONS, AlertState, DeliveryState
from vocab.states import BUILD_STEPS, BuildStatus, DeploymentStatus, StepStatus

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
WEIGHTS = {  # a split alias (vocab/weights.py)
    "type": "object",
    "additionalProperties": {"type": "integer", "minimum": 1, "maximum": 100},
    "description": "Version number -> percent of the alias's calls, adding up to 100.",
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


def one_of(values) -> dict:
    """A string that is one of `values` (a StrEnum, or a tuple of names)."""
    return typed("string", enum=[str(v) for v in values])


def fields(**kinds: str) -> dict:
    """fields(string="model version", time="created_at") -> {"model": {"type": "string"}, ...}."""
    return {name: KINDS[kind] for kind, names in kinds.items() for name in names.split()}


def lineage_properties() -> dict:
    """A version's lineage (hub/lineage.py, docs/lineage.md): parent, children, snapshots trained on."""
    snapshot = fields(
        string="digest", text="model version format url", number="rows labels", time="created_at"
    )
    return {
        "parent": typed(
            "string", nullable=True, description="The version of this model it was retrained from."
        ),
        "children": array(typed("string")) | {"description": "The versions retrained from this one."},
        "trained_on": array(obj(snapshot)) | {"description": "Its dataset snapshots; null figures: gone."},
    }


def version_schemas() -> dict:
    """One version in detail, and the reply to a publish: with its lineage."""
    detail = fields(object="manifest", string="card") | {"examples": array({})}
    published = {"created": typed("boolean", description="false: same digest")}
    return {
        "VersionDetail": extend("Version", detail | lineage_properties()),
        "Published": extend("Version", published | lineage_properties()),
    }


def catalog_schemas() -> dict:
    tensors, strings = {"type": "object", "additionalProperties": ref("TensorSpec")}, array(typed("string"))
    status = one_of(DeploymentStatus)
    deployment = fields(text="url runner env_key error", integer="restarts", time="updated_at")
    version = fields(string="model version digest task framework", integer="size", time="created_at")
    summary = fields(string="name task summary", text="owner latest production shown", time="updated_at")
    summary |= {"alerts_firing": typed("integer", description="Alert rules firing, per serving version.")}
    return {
        "TensorSpec": obj({"dtype": typed("string"), "shape": array(typed("integer"))}, ["dtype"]),
        "Deployment": obj({"status": status, **deployment}, ["status"]),
        "Version": obj(
            version
            | {"aliases": strings, "inputs": tensors, "outputs": tensors, "labels": strings}
            | {"deployment": ref("Deployment")}
        ),
        **version_schemas(),  # VersionDetail, Published
        "ModelSummary": obj(summary | {"tags": strings, "deployment": ref("Deployment")}),
        "Model": extend(
            "ModelSummary",
            {
                "aliases": typed("object", additionalProperties=typed("string")),
                "weights": typed("object", additionalProperties=WEIGHTS),  # the aliases that split calls
                "versions": array(ref("Version")),
            },
        ),
        "ModelCard": extend("ModelSummary", card_properties()),  # hub/listing.py _card
        "ModelList": obj(
            {"models": array(ref("ModelCard")), "facets": facets_schema()}
            | fields(integer="total page pages per_page")  # per_page 0: every model on one page
        ),
        "AliasRequest": obj(
            {
                "version": typed("string", description="A version, an alias, or weights: 1.0.0=90,1.1.0=10."),
                "retire": typed("boolean", description="Stop the version the alias leaves (default false)."),
                "weights": WEIGHTS,
            },
            required=[],
        ),
    }


def card_properties() -> dict:
    """What a catalog card adds to a model's summary (hub/listing.py)."""
    return fields(text="framework", integer="requests_30d feedback", number="accuracy accuracy_low") | {
        "gpu": one_of(GPU_NEEDS)
    }


def facets_schema() -> dict:
    """Per filter (task, framework, tag, gpu, state): its values with how many models each keeps."""
    value = obj({"value": typed("string"), "count": typed("integer"), "chosen": typed("boolean")})
    return typed("object", additionalProperties=array(value))


def build_properties() -> dict:
    build = fields(integer="id", string="model version", time="created_at started_at finished_at")
    step = obj({"name": one_of(BUILD_STEPS), "status": one_of(StepStatus), "seconds": KINDS["number"]})
    progress = obj({"done": KINDS["integer"], "total": KINDS["integer"], "step": KINDS["text"]})
    return build | {
        "seconds": KINDS["number"],
        "status": one_of(BuildStatus),
        "steps": array(step),
        "progress": progress,
        "alias": typed("string", True, description="Moves to this version when the build succeeds."),
    }


def deployment_schemas() -> dict:
    build = build_properties()
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
                        "weights": {"oneOf": [WEIGHTS, typed("null")]},
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
    numbers = "error_rate p95_ms accuracy accuracy_low accuracy_high drift_share mean_rating"
    return row | fields(number=numbers)


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
    point = fields(time="at minute", integer="requests errors direct feedback correct incorrect")
    point |= fields(number="p50 p95 p99 accuracy accuracy_low accuracy_high")
    card = fields(string="model version", integer="version_id requests errors", number="error_rate")
    return card | {
        "window": typed("string", nullable=True, description="e.g. 24h; null: all time"),
        "step": typed("string", nullable=True, description="the series' step, e.g. 15m"),
        "sources": obj(fields(integer="hub direct")),
        "latency_ms": obj(fields(number="p50 p95 p99 mean")),
        "feedback": obj(feedback),
        "series": array(obj(point)),
        "drift": drift_summary(),
    }


def drift_schemas() -> dict:
    column = fields(string="column", text="method note", number="score threshold")
    comparison = {
        "columns": array(obj(column | {"drifted": typed("boolean", nullable=True)})),
        "share": KINDS["number"],
        "drifted": typed("boolean", nullable=True),
        "rows": obj(fields(integer="reference current")),
    }
    run = fields(integer="id", string="model version status reference", time="at", text="error")
    run |= {"share": KINDS["number"], "drifted": typed("boolean", nullable=True)}
    run |= {"window": obj(fields(time="start end")), "report": typed("boolean")}
    run |= {"inputs": nullable(obj(comparison)), "outputs": nullable(obj(comparison))}
    window = typed("string", pattern="^[0-9]{1,5}[mhd]$", description="e.g. 90m, 24h, 7d; default 24h")
    return {
        "DriftRequest": obj({"window": window}, []),
        "DriftRun": obj(run),
        "DriftHistory": obj(fields(string="model version") | {"latest": nullable(ref("DriftRun")),
                                                             "runs": array(ref("DriftRun"))}),
    }  # fmt: skip


def drift_summary() -> dict:
    summary = fields(number="share", time="at", integer="run", string="reference")
    summary |= {"drifted": typed("boolean", nullable=True)}
    verdicts = {"type": "object", "additionalProperties": typed("boolean", nullable=True)}
    return nullable(obj(summary | {"columns": verdicts}))


def nullable(schema: dict) -> dict:
    return {"anyOf": [schema, {"type": "null"}]}


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
    from web.openapi_files import file_schemas

    schemas = {"Error": error_schema()}
    for part in (catalog_schemas, deployment_schemas, prediction_schemas, drift_schemas, v2_schemas,
                 alert_schemas, file_schemas):  # fmt: skip
        schemas |= part()
    return {"schemas": schemas}


def alert_schemas() -> dict:
    state, span = one_of(AlertState), typed("string", description="e.g. 10m, 1h, 1d; 0: none")
    status = fields(string="version", time="since checked_at", number="value") | {"state": state}
    rule = fields(integer="id", string="condition metric op window source", float="threshold")
    rule |= fields(text="webhook", time="created_at since") | {"for": span, "state": state}
    rule |= {"signed": typed("boolean"), "versions": array(obj(status))}
    action = typed("string", True, enum=[*ACTIONS, None], description="When a canary rule fires: rollback")
    rule |= {"action": action}
    attempt = fields(integer="number", time="at", text="error", float="duration_ms")
    attempt |= {"status": typed("integer", nullable=True)}
    event = fields(integer="id rule", string="condition version", time="at", number="value")
    event |= fields(float="threshold")
    event |= {"previous": state, "state": state, "delivery": one_of(DeliveryState), "action": action}
    event |= {"outcome": typed("string", True, description="What the action did, or why it did not")}
    request = {
        "when": typed("string", description="METRIC OP NUMBER (accuracy_low < 0.8) or 'no traffic for 10m'"),
        "for": span, "window": span, "webhook": typed("string", format="uri"),
        "secret": typed("string", maxLength=200, description="Signs the webhook's body (HMAC-SHA256)"),
        "action": typed("string", enum=list(ACTIONS), description="rollback (canary rules only)"),
    }  # fmt: skip
    return {
        "AlertRule": obj(rule),
        "Alerts": obj(fields(string="model", integer="firing") | {"rules": array(ref("AlertRule")),
                      "history": array(obj(event | {"attempts": array(obj(attempt))}))}),
        "AlertRequest": obj(request, ["when"], additionalProperties=False),
    }  # fmt: skip
