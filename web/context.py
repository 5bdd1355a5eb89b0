"""What a request reaches the hub through (a leaf, as flaskr's db.py): the app's Hub, and whether
the request wants JSON. The blueprints import this module; it imports none of them."""

from __future__ import annotations

from flask import current_app, g, request

from hub.hub import Hub

JSON_PREFIXES = ("/api/", "/v2")


def get_hub() -> Hub:
    """The Hub that create_app was given (or made)."""
    return current_app.extensions["hub"]


def wants_json() -> bool:
    """API, v2 and metrics requests get JSON errors, and so do pages asked for as data (`.json`,
    `Accept: application/json`); every other path gets an HTML page."""
    path = request.path
    return path.startswith(JSON_PREFIXES) or path == "/metrics" or path.endswith(".json") or prefers_json()


def prefers_json() -> bool:
    """The request's Accept header ranks JSON above HTML (a browser's and curl's `*/*` do not)."""
    return request.accept_mimetypes.best_match(["text/html", "application/json"]) == "application/json"


def client() -> str:
    """Who is calling, as far as the hub can tell: their token, else the address the request came from."""
    caller = g.get("principal")
    if caller is not None and caller.token_id is not None:
        return f"token:{caller.token_id}"
    return request.remote_addr or ""
