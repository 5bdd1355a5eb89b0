"""The native predict call as plain WSGI, in front of Flask.

Predict is the one route where the hub's own CPU is the product: it shares cores with the models it
serves. Answering it before Flask builds a request context, matches URLs and runs hooks costs about a
quarter less CPU per call (`make bench`). The Flask rule `api.predict` stays registered, for url_for
and the OpenAPI document, and runs the same `predict_reply` if a request ever reaches it.
"""

from __future__ import annotations

import json
import re
from http import HTTPStatus
from urllib.parse import parse_qs

from hub.errors import HubError, Invalid, database_errors, public
from hub.hub import Hub
from vocab.names import split_ref
from web.auth import bearer

PREDICT_PATH = re.compile(r"^/api/v1/models/(?P<name>.+)/predict$")


def predict_reply(hub: Hub, name: str, version: str | None, raw: bytes) -> tuple[dict, dict]:
    """(reply, headers) of a native predict call; raises HubError like every other use case."""
    try:
        body = json.loads(raw)
    except ValueError:
        body = None
    if not isinstance(body, dict):
        raise Invalid("The request body must be a JSON object, with Content-Type: application/json.")
    name, ref = split_ref(name)
    reply = hub.predict(name, version or ref, body.get("inputs"))
    return reply, {"X-Prediction-Id": reply["id"]}


class PredictFastPath:
    """Answers `POST /api/v1/models/<name>/predict`; every other request goes on to `app`."""

    def __init__(self, app, hub: Hub):
        self.app = app
        self.hub = hub
        self.caught = (HubError, *database_errors())  # a database that does not answer: 503

    def __call__(self, environ, start_response):
        match = PREDICT_PATH.match(environ.get("PATH_INFO", ""))
        if match is None or environ.get("REQUEST_METHOD") != "POST" or _signed_in_browser(environ):
            return self.app(environ, start_response)  # Flask: its session and CSRF check (web/auth.py)
        try:
            status, (body, headers) = 200, self._reply(environ, match["name"])
        except self.caught as e:
            error = public(e)
            status, body = error.status, error.to_dict()
            headers = {"Retry-After": str(error.retry_after)} if error.retry_after else {}
        finally:
            self.hub.release_connection()
        data = json.dumps(body).encode()
        head = [("Content-Type", "application/json"), ("Content-Length", str(len(data))), *headers.items()]
        start_response(f"{status} {HTTPStatus(status).phrase}", head)
        return [data]

    def _reply(self, environ, name: str) -> tuple[dict, dict]:
        caller = self.hub.principal(bearer(environ.get("HTTP_AUTHORIZATION")))
        self.hub.require(caller, "predict")
        version = parse_qs(environ.get("QUERY_STRING", "")).get("version", [None])[0]
        length = int(environ.get("CONTENT_LENGTH") or 0)
        return predict_reply(self.hub, name, version, environ["wsgi.input"].read(length))


def _signed_in_browser(environ) -> bool:
    """A call from a page with a session cookie and no token: Flask reads the session."""
    return "HTTP_AUTHORIZATION" not in environ and "session=" in environ.get("HTTP_COOKIE", "")
