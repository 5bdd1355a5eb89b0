"""Signing in on the web: a sign-in page that takes an API token, a session cookie that names it
(HttpOnly, SameSite=Lax, Secure when the hub's public URL is https), and a CSRF token that every form
and every call made with the cookie must carry."""

from __future__ import annotations

import hmac
import os
import secrets
from pathlib import Path

from flask import Blueprint, Flask, g, redirect, render_template, request, session, url_for

from hub.errors import HubError, Invalid
from web.auth import public
from web.context import get_hub

blueprint = Blueprint("session", __name__)
SECRET_FILE = "session-secret"
SAFE_METHODS = {"GET", "HEAD", "OPTIONS"}


def install(app: Flask, home: Path, https: bool) -> None:
    app.secret_key = _secret(Path(home))
    app.config.update(
        SESSION_COOKIE_HTTPONLY=True, SESSION_COOKIE_SAMESITE="Lax", SESSION_COOKIE_SECURE=https
    )
    app.context_processor(lambda: {"csrf_token": csrf_token, "caller": g.get("principal")})
    app.register_blueprint(blueprint)


def _secret(home: Path) -> bytes:
    """The key that signs session cookies: made once, kept in the hub's home (mode 0600)."""
    path = home / SECRET_FILE
    if not path.exists():
        home.mkdir(parents=True, exist_ok=True)
        try:
            with open(path, "x", opener=lambda p, f: os.open(p, f, 0o600)) as out:
                out.write(secrets.token_hex(32))
        except FileExistsError:  # another worker made it first
            pass
    return bytes.fromhex(path.read_text().strip())


def csrf_token() -> str:
    """This session's CSRF token, for forms (`csrf_token` field) and scripts (X-CSRF-Token header)."""
    if "csrf" not in session:
        session["csrf"] = secrets.token_urlsafe(24)
    return session["csrf"]


def session_token() -> str | None:
    """The digest of the token this browser signed in with, if any."""
    return session.get("token")


def check_csrf() -> None:
    """Refuse a state-changing request that a page made without this session's CSRF token."""
    if request.method in SAFE_METHODS:
        return
    sent = request.form.get("csrf_token") or request.headers.get("X-CSRF-Token") or ""
    if not hmac.compare_digest(sent, session.get("csrf", "")) or not sent:
        raise Invalid(
            "The form is out of date (its CSRF token does not match); reload the page and send it again."
        )


@blueprint.get("/sign-in")
@public
def sign_in_page():
    return render_template("sign_in.html", error="", next=_next())


@blueprint.post("/sign-in")
@public
def sign_in():
    token = request.form.get("token", "").strip()
    try:
        caller, digest = get_hub().sign_in(token)
    except HubError as e:
        return render_template("sign_in.html", error=e.message, next=_next()), e.status
    session.clear()
    session["token"], session["owner"] = digest, caller.owner
    return redirect(_next(), code=303)


@blueprint.post("/sign-out")
@public
def sign_out():
    session.clear()
    return redirect(url_for("pages.catalog"), code=303)


def _next() -> str:
    """Where to go after signing in: a path on this hub only."""
    target = request.values.get("next") or "/"
    return target if target.startswith("/") and not target.startswith("//") else "/"
