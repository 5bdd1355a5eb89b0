"""The JSON API under /api/v1."""

from __future__ import annotations

from flask import Blueprint, Response, current_app, jsonify, request

from hub.alerts import alert_fields
from hub.errors import Invalid
from vocab import names
from web import catalog_page
from web.auth import needs, owner_only, principal, public
from web.context import client, get_hub
from web.fastpath import CLIENT_HEADER, predict_reply
from web.openapi import document

blueprint = Blueprint("api", __name__, url_prefix="/api/v1")


def split_ref(name: str) -> tuple[str, str | None]:
    """'iris@1.0.0' -> ('iris', '1.0.0'); a ?version= argument wins over the '@' part."""
    name, ref = names.split_ref(name)
    return name, request.args.get("version") or ref


def json_body() -> dict:
    if "\\u0000" in request.get_data(as_text=True):
        raise Invalid("The request body has a NUL character (\\u0000) in a string; remove it.")
    body = request.get_json(silent=True)
    if not isinstance(body, dict):
        raise Invalid("The request body must be a JSON object, with Content-Type: application/json.")
    return body


@blueprint.get("/health")
@needs("read")
def health():
    return jsonify({"ok": True, **get_hub().status()})


@blueprint.post("/models")
@needs("publish")
def publish():
    """A file list (JSON) of blobs uploaded in parts, or the whole package as one .tar.gz."""
    if request.mimetype == "application/json":
        version = get_hub().publish_files(json_body().get("files"), principal())
    else:
        version = get_hub().publish(request.stream, request.content_length, principal())
    return jsonify(version), 201 if version["created"] else 200


@blueprint.get("/models")
@needs("read")
def models():
    return jsonify(catalog_page.api_listing(request.args))  # the catalog page's listing (web/catalog_page.py)


@blueprint.get("/models/<path:name>")
@needs("read")
def model(name):
    return jsonify(get_hub().model(name))


@blueprint.get("/models/<path:name>/versions/<ref>")
@needs("read")
def version(name, ref):
    return jsonify(get_hub().version(name, ref))


@blueprint.get("/models/<path:name>/aliases")
@needs("read")
def aliases(name):
    return jsonify(get_hub().alias_history(name))  # where each alias points, and its changes (hub/aliases.py)


@blueprint.put("/models/<path:name>/aliases/<alias>")
@needs("deploy")
def set_alias(name, alias):
    owner_only(name)
    body = json_body()
    ref, retire, weights = body.get("version"), body.get("retire", False), body.get("weights")
    if weights is not None:  # {"1.0.0": 90, "1.1.0": 10}; "version": "1.0.0=90,1.1.0=10" works too
        return jsonify(get_hub().split_alias(name, alias, weights))
    if not ref:
        raise Invalid('Say which version the alias points to: {"version": "1.0.0"}.')
    if not isinstance(retire, bool):
        raise Invalid(f'"retire" must be true or false, not {retire!r}.')
    reply = get_hub().set_alias(name, alias, str(ref), retire)
    return jsonify(reply), 200 if reply["moved"] else 202


@blueprint.post("/models/<path:name>/aliases/<alias>/promote")
@needs("deploy")
def promote(name, alias):
    owner_only(name)
    ref = json_body().get("version")
    if not ref or not isinstance(ref, str):
        raise Invalid('Say which version gets every call: {"version": "1.1.0"}.')
    reply = get_hub().promote(name, ref, alias)
    return jsonify(reply), 200 if reply["moved"] else 202


@blueprint.post("/models/<path:name>/aliases/<alias>/rollback")
@needs("deploy")
def rollback(name, alias):
    owner_only(name)
    return jsonify(get_hub().rollback(name, alias))


@blueprint.post("/models/<path:name>/deploy")
@needs("deploy")
def deploy(name):
    name, ref = split_ref(name)
    owner_only(name)
    return jsonify(get_hub().deploy(name, ref)), 202


@blueprint.post("/models/<path:name>/undeploy")
@needs("deploy")
def undeploy(name):
    name, ref = split_ref(name)
    owner_only(name)
    return jsonify(get_hub().undeploy(name, ref))


@blueprint.get("/builds/<id:build_id>")
@needs("read")
def build(build_id):
    return jsonify(get_hub().build(build_id))


@blueprint.post("/builds/<id:build_id>/cancel")
@needs("deploy")
def cancel_build(build_id):
    owner_only(get_hub().build(build_id)["model"])
    return jsonify(get_hub().cancel_build(build_id)), 202


@blueprint.get("/models/<path:name>/logs")
@needs("read")
def logs(name):
    return jsonify(get_hub().logs(*split_ref(name)))


@blueprint.post("/models/<path:name>/predict")
@needs("predict")
def predict(name):
    """Answered by web.fastpath.PredictFastPath before Flask; kept for url_for and the API document."""
    raw, content_type = request.get_data(), request.content_type
    version, client_key = request.args.get("version"), request.headers.get(CLIENT_HEADER, "")
    reply, headers = predict_reply(get_hub(), name, version, raw, content_type, client_key)
    return jsonify(reply), 200, headers


@blueprint.post("/predictions/<prediction_id>/feedback")
@needs("feedback")
def prediction_feedback(prediction_id):
    return jsonify(get_hub().feedback(prediction_id, json_body(), client())), 201


@blueprint.post("/models/<path:name>/feedback")
@needs("feedback")
def model_feedback(name):
    name, ref = split_ref(name)
    return jsonify(get_hub().model_feedback(name, json_body(), ref, client())), 201


@blueprint.get("/models/<path:name>/scorecard")
@needs("read")
def scorecard(name):
    window, step = request.args.get("window") or "24h", request.args.get("step")
    return jsonify(get_hub().scorecard(*split_ref(name), window=window, step=step))


@blueprint.post("/models/<path:name>/drift")
@needs("deploy")
def run_drift(name):
    name, ref = split_ref(name)
    body = request.get_json(silent=True) if request.content_length else {}
    if not isinstance(body, dict):
        raise Invalid('The request body must be a JSON object such as {"window": "24h"}, or empty.')
    window = request.args.get("window") or body.get("window") or "24h"
    return jsonify(get_hub().drift(name, ref, str(window))), 201


@blueprint.get("/models/<path:name>/drift")
@needs("read")
def drift(name):
    return jsonify(get_hub().drift_history(*split_ref(name)))


@blueprint.get("/tasks/<task>/leaderboard")
@needs("read")
def leaderboard(task):
    return jsonify(get_hub().leaderboard(task))


@blueprint.get("/status")
@needs("read")
def status():
    return jsonify(get_hub().status())


@blueprint.get("/openapi.json")
@public
def openapi():
    return jsonify(document(current_app))


@needs("read")
def prometheus_metrics():
    """GET /metrics (registered by create_app, outside /api/v1): the Prometheus text format."""
    body, content_type = get_hub().metrics_text()
    return Response(body, content_type=content_type)


@blueprint.get("/models/<path:name>/alerts")
@needs("read")
def alerts(name):
    return jsonify(get_hub().alerts(name))


@blueprint.post("/models/<path:name>/alerts")
@needs("deploy")
def add_alert(name):
    owner_only(name)
    return jsonify(get_hub().add_alert(name, **alert_fields(json_body()))), 201


@blueprint.delete("/models/<path:name>/alerts/<id:rule_id>")
@needs("deploy")
def remove_alert(name, rule_id):
    owner_only(name)
    get_hub().remove_alert(name, rule_id)
    return "", 204
