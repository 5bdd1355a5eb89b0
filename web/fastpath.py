"""The predict calls (native and v2 infer) as plain WSGI, in front of Flask.

Predict is the one route where the hub's own CPU is the product: it shares cores with the models it
serves. Answering it before Flask builds a request context, matches URLs and runs hooks costs about a
quarter less CPU per call (`make bench`). The Flask rule `api.predict` stays registered, for url_for
and the OpenAPI document, and runs the same `predict_reply` if a request ever reaches it; so do
the v2 infer rules with `web.v2.infer_reply`.

A body is read once (orjson) and, when it is exactly `{"inputs": ...}`, handed on with the inputs
(`Hub.predict(body=...)`): numpy checks a 3 MB image in C, and it goes to the model's server as
602 KB of raw bytes (a Python model gets the body as it came), never walked nor encoded again.
A `.npy` body is read by numpy; a PNG or JPEG body becomes an image model's input tensor on gevent's
thread pool (web/imagebodies.py).
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
from web.imagebodies import IMAGE_HEADER, image_input, image_type, read_image
from web.requestbodies import CLIENT_HEADER, is_npy, json_bytes, parse_json, read_npy, single_input
from web.v2 import HEADER_LENGTH, infer_reply

PREDICT_PATH = re.compile(r"^/api/v1/models/(?P<name>.+)/predict$")
INFER_PATH = re.compile(r"^/v2/models/(?P<name>.+?)(?:/versions/(?P<version>[^/]+))?/infer$")


def predict_reply(
    hub: Hub, name: str, version: str | None, raw: bytes, content_type: str | None = None, client: str = ""
) -> tuple[dict, dict]:
    """(reply, headers) of a native predict call; raises HubError like every other use case.
    The body is JSON `{"inputs": {...}}`, or one `.npy` tensor for a model with one input."""
    name, ref = split_ref(name)
    ref = version or ref
    if is_npy(content_type):
        array = read_npy(raw)  # before the route: a bad body is 400 whether or not the model serves
        route = hub.route(name, ref, client)  # picked once: a split alias must not pick twice
        inputs = {single_input(route.version.inputs, name): array}
        reply = hub.predict(name, ref, inputs, client=client, route=route)
        return reply, {"X-Prediction-Id": reply["id"]}
    if media := image_type(content_type):
        return _image_reply(hub, name, ref, raw, media, client)
    try:
        body = parse_json(raw)
    except ValueError:
        body = None
    if not isinstance(body, dict):
        raise Invalid(
            "The request body must be a JSON object, with Content-Type: application/json "
            "(or one tensor saved by numpy.save, with Content-Type: application/x-npy, or a PNG or JPEG "
            "image with Content-Type: image/png or image/jpeg for a model with one image input)."
        )
    exact = raw if len(body) == 1 and "inputs" in body else None  # else the hub encodes the inputs
    reply = hub.predict(name, ref, body.get("inputs"), body=exact, client=client)
    return reply, {"X-Prediction-Id": reply["id"]}


def _image_reply(hub: Hub, name: str, ref: str | None, raw: bytes, media: str, client: str):
    """A PNG or JPEG body, made the model's one image input (web/imagebodies.py)."""
    route = hub.route(name, ref, client)  # the schema says the size, channels and layout
    target = image_input(route.version.inputs, name, media)
    array, done = read_image(raw, media, target, hub.config.max_image_pixels)
    reply = hub.predict(name, ref, {target.name: array}, client=client, route=route)
    return reply, {"X-Prediction-Id": reply["id"], IMAGE_HEADER: done}


class PredictFastPath:
    """Answers `POST /api/v1/models/<name>/predict` and `POST /v2/models/<name>[/versions/<v>]/infer`;
    every other request goes on to `app`."""

    def __init__(self, app, hub: Hub):
        self.app = app
        self.hub = hub
        self.caught = (HubError, *database_errors())  # a database that does not answer: 503

    def __call__(self, environ, start_response):
        path = environ.get("PATH_INFO", "")
        match = PREDICT_PATH.match(path) or INFER_PATH.match(path)
        if match is None or environ.get("REQUEST_METHOD") != "POST" or _signed_in_browser(environ):
            return self.app(environ, start_response)  # Flask: its session and CSRF check (web/auth.py)
        try:
            status, (data, headers) = 200, self._reply(environ, match)
        except self.caught as e:
            error = public(e)
            status, data = error.status, json.dumps(error.to_dict()).encode()
            headers = {"Retry-After": str(error.retry_after)} if error.retry_after else {}
        finally:
            self.hub.release_connection()
        headers = {"Content-Type": "application/json", **headers, "Content-Length": str(len(data))}
        start_response(f"{status} {HTTPStatus(status).phrase}", list(headers.items()))
        return [data]

    def _reply(self, environ, match: re.Match) -> tuple[bytes, dict]:
        caller = self.hub.principal(bearer(environ.get("HTTP_AUTHORIZATION")))
        self.hub.require(caller, "predict")
        length = int(environ.get("CONTENT_LENGTH") or 0)
        raw = environ["wsgi.input"].read(length)
        client = environ.get("HTTP_" + CLIENT_HEADER.upper().replace("-", "_"), "")
        if match.re is INFER_PATH:
            header_length = environ.get("HTTP_" + HEADER_LENGTH.upper().replace("-", "_"))
            return infer_reply(self.hub, match["name"], match["version"], raw, header_length, client)
        version = parse_qs(environ.get("QUERY_STRING", "")).get("version", [None])[0]
        content_type = environ.get("CONTENT_TYPE")
        reply, headers = predict_reply(self.hub, match["name"], version, raw, content_type, client)
        return json_bytes(reply), headers


def _signed_in_browser(environ) -> bool:
    """A call from a page with a session cookie and no token: Flask reads the session."""
    return "HTTP_AUTHORIZATION" not in environ and "session=" in environ.get("HTTP_COOKIE", "")
