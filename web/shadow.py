"""The JSON API of shadow versions: copy a share of a model's live calls to another version, stop,
see the setting, and compare two versions on the calls one answered live and the other in shadow
(hub/shadow.py). Starting and stopping need the `deploy` scope and the model's owner."""

from __future__ import annotations

from flask import Blueprint, jsonify, request

from hub.errors import Invalid
from vocab.names import split_ref
from web.auth import needs, owner_only
from web.context import get_hub

blueprint = Blueprint("shadow", __name__, url_prefix="/api/v1")
FIELDS = ("version", "share")


@blueprint.get("/models/<path:name>/shadow")
@needs("read")
def shadow(name):
    return jsonify(get_hub().shadow(split_ref(name)[0]))


@blueprint.put("/models/<path:name>/shadow")
@needs("deploy")
def start(name):
    name = split_ref(name)[0]
    owner_only(name)
    body = shadow_body()
    return jsonify(get_hub().set_shadow(name, body.get("version"), body.get("share", 0.2)))


@blueprint.delete("/models/<path:name>/shadow")
@needs("deploy")
def stop(name):
    name = split_ref(name)[0]
    owner_only(name)
    return jsonify(get_hub().stop_shadow(name))


@blueprint.get("/models/<path:name>/compare")
@needs("read")
def compare(name):
    a, b = (request.args.get(k, "").strip() for k in ("a", "b"))
    if not a or not b:
        raise Invalid(f"Name the two versions to compare: ?a=VERSION&b=VERSION (a={a!r}, b={b!r}).")
    window = request.args.get("window") or "24h"
    return jsonify(get_hub().compare_versions(split_ref(name)[0], a, b, window))


def shadow_body() -> dict:
    body = request.get_json(silent=True)
    if not isinstance(body, dict):
        raise Invalid('The body must be a JSON object such as {"version": "1.1.0", "share": 0.2}.')
    unknown = sorted(set(body) - set(FIELDS))
    if unknown:
        raise Invalid(f"Unknown field(s) {', '.join(map(repr, unknown))}; the fields are version, share.")
    if not isinstance(body.get("version"), str):
        raise Invalid(f'version {body.get("version")!r} is not a version; give one such as "1.1.0".')
    return body
