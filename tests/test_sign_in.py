"""Signing in on the web with an API token: the session cookie, CSRF tokens on every form and on
calls made with the cookie, and buttons shown only to those allowed. A real Hub (SQLite, then
PostgreSQL) behind the web app."""

from __future__ import annotations

import re

import pytest

from tests.packages import archive, onnx_package
from tests.page_reading import text_of
from web.app import create_app


@pytest.fixture
def site(open_hub, tmp_path, database_url):
    """(hub, app, admin token) with `doubler` published and a build of it queued (no workers)."""
    hub = open_hub(tmp_path / "home", database_url, build_workers=0)
    hub.publish(archive(onnx_package(tmp_path / "pkg")))
    hub.deploy("doubler")
    yield hub, create_app(hub=hub), (hub.config.home / "admin-token").read_text().strip()
    hub.close()


def csrf_of(page: str) -> str:
    return re.search(r'name="csrf_token" value="([^"]+)"', page).group(1)


def sign_in(browser, token: str):
    form = browser.get("/sign-in?next=/models/doubler").get_data(as_text=True)
    return browser.post(
        "/sign-in", data={"token": token, "csrf_token": csrf_of(form), "next": "/models/doubler"}
    )


def test_signing_in_sets_a_cookie_that_names_the_token_without_holding_it(site):
    _, app, token = site
    browser = app.test_client()
    reply = sign_in(browser, token)
    assert reply.status_code == 303 and reply.headers["Location"] == "/models/doubler"
    cookie = reply.headers["Set-Cookie"]
    assert "HttpOnly" in cookie and "SameSite=Lax" in cookie and "Secure" not in cookie
    assert token not in cookie
    page = text_of(browser.get("/models/doubler").get_data(as_text=True))
    assert "admin Sign out" in page
    out = browser.post("/sign-out", data={"csrf_token": csrf_of(browser.get("/").get_data(as_text=True))})
    assert out.status_code == 303
    assert "Sign in" in text_of(browser.get("/").get_data(as_text=True))


def test_a_bad_token_is_refused_on_the_page(site):
    _, app, _ = site
    reply = sign_in(app.test_client(), "aid_not-a-real-token")
    assert reply.status_code == 401
    assert "The token is unknown, revoked or expired." in text_of(reply.get_data(as_text=True))


def test_forms_without_the_sessions_csrf_token_are_refused(site):
    _, app, _ = site
    browser = app.test_client()
    form = {"version": "1.0.0", "comment": "works", "rating": "5"}
    forged = browser.post("/models/doubler/feedback", data=form)
    assert forged.status_code == 400 and "CSRF token does not match" in text_of(forged.get_data(as_text=True))
    page = browser.get("/models/doubler").get_data(as_text=True)
    sent = browser.post("/models/doubler/feedback", data={**form, "csrf_token": csrf_of(page)})
    assert sent.status_code == 303


def test_calls_made_with_the_cookie_need_the_csrf_header(site):
    hub, app, token = site
    browser = app.test_client()
    sign_in(browser, token)
    csrf = csrf_of(browser.get("/models/doubler").get_data(as_text=True))
    assert browser.post("/api/v1/models/doubler/undeploy").status_code == 400
    assert browser.post("/api/v1/models/doubler/undeploy", headers={"X-CSRF-Token": csrf}).status_code == 200


def test_the_cancel_button_is_shown_only_to_those_who_may_cancel(site):
    hub, app, token = site
    build_id = hub.logs("doubler")["build"]["id"]
    anonymous = app.test_client().get(f"/builds/{build_id}").get_data(as_text=True)
    assert 'id="build-cancel"' not in anonymous
    browser = app.test_client()
    sign_in(browser, token)
    assert 'id="build-cancel"' in browser.get(f"/builds/{build_id}").get_data(as_text=True)


def test_the_cookie_is_secure_when_the_hub_is_served_over_https(open_hub, tmp_path, database_url):
    hub = open_hub(tmp_path / "home", database_url, public_url="https://hub.example.org")
    try:
        browser = create_app(hub=hub).test_client()
        reply = sign_in(browser, (hub.config.home / "admin-token").read_text().strip())
        assert "Secure" in reply.headers["Set-Cookie"]
    finally:
        hub.close()


def test_external_card_images_are_a_setting(open_hub, tmp_path, database_url):
    from web.app import create_app

    hub = open_hub(tmp_path / "home", database_url, card_images=True)
    try:
        csp = create_app(hub=hub).test_client().get("/").headers["Content-Security-Policy"]
        assert "img-src 'self' data: https:;" in csp
    finally:
        hub.close()


def test_a_signed_in_page_may_predict_on_a_hub_closed_to_anonymous_callers(open_hub, tmp_path, database_url):
    hub = open_hub(tmp_path / "home", database_url, anonymous_scopes=())
    try:
        hub.publish(archive(onnx_package(tmp_path / "pkg")))
        browser = create_app(hub=hub).test_client()
        body = {"inputs": {"x": [[1.0, 2.0]]}}
        assert browser.post("/api/v1/models/doubler/predict", json=body).status_code == 401
        sign_in(browser, (hub.config.home / "admin-token").read_text().strip())
        csrf = csrf_of(browser.get("/models/doubler").get_data(as_text=True))
        assert browser.post("/api/v1/models/doubler/predict", json=body).status_code == 400  # no CSRF header
        reply = browser.post("/api/v1/models/doubler/predict", json=body, headers={"X-CSRF-Token": csrf})
        assert reply.status_code == 503  # past sign-in and CSRF: the model is not deployed
    finally:
        hub.close()
