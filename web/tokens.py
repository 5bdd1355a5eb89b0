"""API tokens over HTTP: who am I, create, list and revoke (each caller their own; an admin any)."""

from __future__ import annotations

from flask import Blueprint, jsonify

from web.api import json_body
from web.auth import needs, principal, public
from web.context import get_hub

blueprint = Blueprint("tokens", __name__, url_prefix="/api/v1")


@blueprint.get("/whoami")
@public
def whoami():
    caller = principal()
    return jsonify({"owner": caller.owner or None, "scopes": sorted(caller.scopes), "token": caller.token_id})


@blueprint.post("/tokens")
@needs("read")
def create_token():
    return jsonify(get_hub().create_token(principal(), json_body())), 201


@blueprint.get("/tokens")
@needs("read")
def tokens():
    return jsonify({"tokens": get_hub().tokens(principal())})


@blueprint.delete("/tokens/<id:token_id>")
@needs("read")
def revoke_token(token_id):
    return jsonify(get_hub().revoke_token(principal(), token_id))
