"""Every route says which scope it needs (`@needs("publish")`, or `@public`); one hook before each
request finds the caller (a bearer token, else the browser's signed-in session, else anonymous) and
checks it. A route that says nothing is
refused: a new route cannot slip past (tests/test_auth.py walks the whole route table)."""

from __future__ import annotations

from collections.abc import Callable

from flask import Flask, current_app, g, request

from hub.auth import Principal
from hub.errors import HubError, Invalid
from web.context import JSON_PREFIXES, get_hub

NEEDS = "required_scope"
PUBLIC = ""


def needs(scope: str) -> Callable:
    """Mark a view as needing `scope` (read, predict, feedback, publish, deploy, admin)."""

    def mark(view: Callable) -> Callable:
        setattr(view, NEEDS, scope)
        return view

    return mark


public = needs(PUBLIC)


def bearer(authorization: str | None) -> str | None:
    """The token of an `Authorization: Bearer aid_...` header, or None."""
    kind, _, token = (authorization or "").partition(" ")
    return token.strip() if kind.lower() == "bearer" and token.strip() else None


def principal() -> Principal:
    """Who makes the current request (set by the hook)."""
    return g.principal


def owner_only(name: str) -> None:
    """403 unless the caller owns model `name` (or is an admin)."""
    get_hub().check_model_owner(principal(), name)


def may_change(name: str) -> bool:
    """Whether the caller may deploy, undeploy or cancel builds of model `name` (for showing buttons)."""
    caller = principal()
    try:
        get_hub().require(caller, "deploy")
        owner_only(name)
    except HubError:
        return False
    return True


def install(app: Flask) -> None:
    app.before_request(_check)


def _check() -> None:
    if request.endpoint is None:  # no route matched: the 404 handler answers
        return
    if "\x00" in request.path or any("\x00" in k + v for k, v in request.args.items(multi=True)):
        raise Invalid("The URL has a NUL character (%00); remove it.")  # PostgreSQL cannot store one
    scope = getattr(current_app.view_functions[request.endpoint], NEEDS, None)
    if scope is None and request.endpoint != "static":
        raise HubError(f"The route {request.endpoint} says no scope; it is refused until it does.")
    from web.session import check_csrf, session_token  # it registers its views with this module

    hub, token = get_hub(), bearer(request.headers.get("Authorization"))
    digest = None if token else session_token()
    g.principal = hub.signed_in(digest) if digest else hub.principal(token)
    if scope:
        hub.require(g.principal, scope)
    if not token and (digest or not request.path.startswith(JSON_PREFIXES)):
        check_csrf()  # a browser: its forms, and its scripts when signed in, carry the session's token
