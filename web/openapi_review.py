"""The OpenAPI operations of the review queue (web/review.py), their schemas inline."""

from __future__ import annotations

from web.openapi_operations import op, query, reply
from web.openapi_schemas import obj, typed

TEXT = typed("string", nullable=True)
ANY = {"description": "As logged (JSON); null when the call is no longer kept."}


def item_schema() -> dict:
    reason = {"type": "string", "enum": ["low_confidence", "disagreement", "drift"]}
    state = {"type": "string", "enum": ["waiting", "labelled", "skipped"]}
    top = obj({"label": typed("string"), "probability": typed("number")})  # the most probable labels
    fields = {
        "id": typed("integer"), "prediction_id": typed("string"), "version": typed("string"),
        "reason": reason, "score": typed("number", description="0..1; higher is more doubtful"),
        "detail": typed("string", description="The reasons in words"), "answer": TEXT, "state": state,
        "label": TEXT, "reviewer": TEXT, "predicted_at": typed("string"), "created_at": typed("string"),
        "reviewed_at": TEXT, "inputs": ANY, "outputs": ANY, "top": {"type": "array", "items": top},
    }  # fmt: skip
    return obj(fields, ["id", "prediction_id", "version", "reason", "score", "answer", "state"])


def rules_schema(required: bool = True) -> dict:
    fields = {
        "measure": {"type": "string", "enum": ["max_probability", "margin", "entropy"]},
        "threshold": typed("number", description="In [0, 1]: below it (max probability, margin) or above "
                           "it (entropy, as a share of its largest value) an answer is doubtful"),
        "per_minute": typed("integer", description="Items per version per minute of calls at most"),
        "max_waiting": typed("integer", description="No new items while this many wait"),
    }  # fmt: skip
    return obj(fields, list(fields) if required else [], additionalProperties=False)


def queue_schema() -> dict:
    counts = obj({k: typed("integer") for k in ("waiting", "labelled", "skipped")})
    fields = {
        "model": typed("string"), "labels": {"type": "array", "items": typed("string")}, "counts": counts,
        "rules": rules_schema(), "items": {"type": "array", "items": item_schema()},
    }  # fmt: skip
    return obj(fields, list(fields))


def answer_schema() -> dict:
    label = obj({"label": typed("string", description="One of the model's labels")}, ["label"])
    skip = obj({"skip": {"type": "boolean", "const": True}}, ["skip"])
    return {"oneOf": [label, skip]}


def review_operations() -> dict:
    path = "/api/v1/models/{name}/review"
    body = {"required": True, "content": {"application/json": {"schema": answer_schema()}}}
    rules = {"required": True, "content": {"application/json": {"schema": rules_schema(required=False)}}}
    feedback = obj(
        {"id": typed("integer"), "label": typed("string"), "correct": typed("boolean", nullable=True)}
    )
    answered = obj({"item": item_schema(), "feedback": {**feedback, "type": ["object", "null"]}})
    limit = query("limit", "Items at most, 0 to 500 (default 50), the most doubtful first.")
    return {
        (path, "GET"): op(
            "The model's review queue: waiting items with their inputs, answers and reasons",
            (200, reply("The queue", queue_schema())), 400, 404, params=[limit], tag="monitor",
        ),
        (path + "/{item_id}", "GET"): op(
            "One review item, whatever its state", (200, reply("The item", item_schema())), 404, tag="monitor"
        ),
        (path + "/{item_id}", "POST"): op(
            "Label a review item (feedback on its prediction) or skip it; a label the model lacks is a 422",
            (200, reply("The item and the feedback", answered)), 400, 401, 403, 404, 409, 422,
            body=body, tag="monitor",
        ),
        (path + "/rules", "PUT"): op(
            "How the model's items are chosen: confidence measure, threshold and caps",
            (200, reply("The queue with its rules", queue_schema())), 400, 401, 403, 404,
            body=rules, tag="monitor",
        ),
    }  # fmt: skip
