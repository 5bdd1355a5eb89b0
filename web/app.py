"""The Flask app factory and the one error handler that turns HubErrors into JSON or a page."""

from __future__ import annotations

import atexit
import logging

from flask import Flask, jsonify, render_template, request
from werkzeug.exceptions import HTTPException
from werkzeug.routing import IntegerConverter

from hub.config import Config
from hub.errors import HubError, database_errors, public
from hub.hub import Hub
from web import api, auth, compare, datasets, files, pages, ratelimits, review, session, shadow, tokens, v2
from web.bodylimits import BodyLimits
from web.context import get_hub, wants_json
from web.fastpath import PredictFastPath

log = logging.getLogger(__name__)
CSP = (
    "default-src 'self'; img-src {images}; style-src 'self'; script-src 'self'; "
    "object-src 'none'; base-uri 'none'; form-action 'self'; frame-ancestors 'none'"
)


def create_app(config: Config | None = None, hub: Hub | None = None) -> Flask:
    """The web app over `hub`; without one it opens a Hub on `config` (default: the environment's)
    and closes it when the process exits. A hub that is passed in stays its caller's to close."""
    app = Flask(__name__)
    app.json.sort_keys = False
    if hub is None:
        hub = Hub(config or Config.load())
        atexit.register(hub.close)
    app.extensions["hub"] = hub
    app.url_map.converters["id"] = RowId
    app.register_blueprint(api.blueprint)
    app.register_blueprint(files.blueprint)
    app.register_blueprint(tokens.blueprint)
    app.register_blueprint(v2.blueprint)
    app.register_blueprint(pages.blueprint)
    app.register_blueprint(compare.blueprint)
    app.register_blueprint(datasets.blueprint)
    app.register_blueprint(shadow.blueprint)
    app.register_blueprint(review.blueprint)
    app.add_url_rule("/metrics", view_func=api.prometheus_metrics)
    auth.install(app)
    session.install(app, hub.config.home, hub.config.public_url.startswith("https://"))
    app.register_error_handler(HubError, _hub_error)
    for kind in database_errors():
        app.register_error_handler(kind, lambda error: _hub_error(public(error)))
    app.register_error_handler(HTTPException, _http_error)
    app.after_request(_security_headers)
    app.teardown_request(lambda _exc: hub.release_connection())
    app.wsgi_app = PredictFastPath(app.wsgi_app, hub)
    rates = {"predict": hub.config.rate_predict, "feedback": hub.config.rate_feedback}
    names = {"predict": "AIDHUB_RATE_PREDICT", "feedback": "AIDHUB_RATE_FEEDBACK"}
    app.wsgi_app = ratelimits.install(app.wsgi_app, rates, names)
    app.wsgi_app = BodyLimits(app.wsgi_app, hub.config)  # before the fast path and Flask
    return app


class RowId(IntegerConverter):
    """`<id:build_id>`: a row id, 1 to 2**63 - 1; a larger number matches no route (404), never a
    database error."""

    def __init__(self, url_map):
        super().__init__(url_map, min=1, max=2**63 - 1)


def _security_headers(response):
    if not wants_json() or response.mimetype == "text/html":  # a page, whatever the Accept header said
        images = "'self' data: https:" if get_hub().config.card_images else "'self' data:"
        response.headers.setdefault("Content-Security-Policy", CSP.format(images=images))
        response.headers.setdefault("X-Content-Type-Options", "nosniff")
        response.headers.setdefault("Referrer-Policy", "same-origin")
    return response


def _hub_error(error: HubError):
    headers = {"Retry-After": str(error.retry_after)} if error.retry_after else {}
    if wants_json():
        return jsonify(error.to_dict()), error.status, headers
    return render_template("error.html", error=error.to_dict()), error.status, headers


def _http_error(error: HTTPException):
    as_hub = HubError(f"{request.method} {request.path}: {error.description or error.name}")
    as_hub.status = error.code or 500
    return _hub_error(as_hub)
