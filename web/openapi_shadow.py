"""The OpenAPI operations of shadow versions (web/shadow.py), their schemas inline."""

from __future__ import annotations

from web.openapi_operations import op, query, reply
from web.openapi_schemas import obj, typed

NUMBER = typed("number", nullable=True)


def shadow_schema() -> dict:
    counts = {k: typed("integer") for k in ("copied", "failed", "dropped")}
    found = {"version": typed("string"), "share": typed("number"), "since": typed("string"), **counts}
    setting = {"type": ["object", "null"], "properties": found, "required": list(found)}
    return obj({"model": typed("string"), "serving": typed("string"), "shadow": setting}, ["model", "shadow"])


def request_schema() -> dict:
    share = typed("number", description="The share of the serving version's calls to copy, in (0, 1].")
    return obj({"version": typed("string"), "share": share}, ["version"], additionalProperties=False)


def compare_schema() -> dict:
    latency = obj({"p50": NUMBER, "mean": NUMBER})
    counts = {k: typed("integer") for k in ("calls", "shadow", "errors", "feedback")}
    side = obj({"version": typed("string"), **counts, "latency_ms": latency, "accuracy": NUMBER})
    figures = {k: typed("integer") for k in ("pairs", "compared_labels", "compared_numbers")}
    head = {"model": typed("string"), "window": typed("string"), "agreement": NUMBER, "mean_abs_diff": NUMBER}
    return obj({**head, **figures, "sides": {"type": "array", "items": side, "minItems": 2, "maxItems": 2}})


def shadow_operations() -> dict:
    path = "/api/v1/models/{name}/shadow"
    body = {"required": True, "content": {"application/json": {"schema": request_schema()}}}
    setting = reply("The model's shadow version (null: none)", shadow_schema())
    versions = [query("a", "The first version (or alias)."), query("b", "The second version (or alias).")]
    window = query("window", "How far back: e.g. 24h, 7d; all: all time. Default 24h.")
    return {
        (path, "GET"): op("The model's shadow version and its counts", (200, setting), 404, tag="monitor"),
        (path, "PUT"): op(
            "Copy a share of the serving version's calls to another version, off the request path",
            (200, setting), 400, 404, 409, body=body, tag="monitor",
        ),
        (path, "DELETE"): op("Stop copying calls to the shadow", (200, setting), 404, tag="monitor"),
        ("/api/v1/models/{name}/compare", "GET"): op(
            "Two versions on the same inputs: agreement, mean absolute difference, latency, errors, accuracy",
            (200, reply("The comparison", compare_schema())), 400, 404, 422,
            params=[*versions, window], tag="monitor",
        ),
    }  # fmt: skip
