"""Tokens, scopes and owners, on a real Hub (SQLite, then PostgreSQL) through the web app.

Every route of the app is called without a token, with a token that has every scope but the one it
needs, and with one that has only that scope: the cases come from the route table itself, so a route
added later is checked too (and a route that declares no scope is refused)."""

from __future__ import annotations

import html
import re
import subprocess

import pytest

from hub.config import Config
from hub.errors import SettingInvalid
from registry.tokens import SCOPES, TokenRow
from tests.conftest import admin_client
from tests.hubserver import AID, HubProcess
from tests.packages import archive, onnx_package
from vocab.times import utcnow
from web.app import create_app
from web.auth import NEEDS

ARGUMENTS = {
    "name": "doubler", "ref": "1.0.0", "version": "1.0.0", "alias": "production", "build_id": "1",
    "prediction_id": "01ABC", "task": "regression", "token_id": "999", "sha256": "a" * 64,
    "path": "aid.yaml", "rule_id": "1", "run_id": "1", "filename": "hub.css", "digest": "sha256:" + "a" * 64,
    "item_id": "1",
}  # fmt: skip


@pytest.fixture
def closed(open_hub, tmp_path, database_url):
    """A hub where anonymous callers may do nothing, builds never run, and `doubler` has no owner."""
    hub = open_hub(tmp_path / "home", database_url, anonymous_scopes=(), build_workers=0)
    hub.publish(archive(onnx_package(tmp_path / "pkg")))
    app = create_app(hub=hub)
    yield hub, app
    hub.close()


def every_route(app) -> list[tuple[str, str, str]]:
    """(method, url with arguments filled in, endpoint) for every rule of the app."""
    routes = []
    for rule in app.url_map.iter_rules():
        url = re.sub(r"<(?:\w+(?:\([^)]*\))?:)?(\w+)>", lambda m: ARGUMENTS[m.group(1)], rule.rule)
        routes += [(method, url, rule.endpoint) for method in sorted(rule.methods - {"HEAD", "OPTIONS"})]
    return routes


def call(client, method: str, url: str, token: str | None = None):
    headers = {"Authorization": f"Bearer {token}"} if token else {}
    return client.open(url, method=method, headers=headers, json={} if method != "GET" else None)


def error_of(reply) -> str:
    """The error message of a JSON reply or of an HTML error page."""
    if reply.is_json:
        return reply.get_json()["error"]
    return html.unescape(reply.get_data(as_text=True))


def test_every_route_declares_its_scope(closed):
    _, app = closed
    for method, url, endpoint in every_route(app):
        if endpoint != "static":
            assert getattr(app.view_functions[endpoint], NEEDS, None) is not None, f"{method} {url}"


def test_every_route_needs_its_scope_and_no_other(closed):
    hub, app = closed
    admin = hub.principal((hub.config.home / "admin-token").read_text().strip())
    tokens = {s: hub.create_token(admin, {"owner": "tester", "scopes": [s]})["token"] for s in SCOPES}
    others = {
        s: hub.create_token(
            admin, {"owner": "tester", "scopes": [o for o in SCOPES if o not in (s, "admin")]}
        )["token"]
        for s in SCOPES
    }
    client, checked = app.test_client(), 0
    for method, url, endpoint in every_route(app):
        scope = getattr(app.view_functions[endpoint], NEEDS, "")
        anonymous = call(client, method, url)
        if not scope:
            assert anonymous.status_code not in (401, 403), (method, url)
            continue
        assert anonymous.status_code == 401, (method, url, anonymous.status_code)
        assert f"needs the {scope!r} scope" in error_of(anonymous)
        if scope != "admin":
            lacking = call(client, method, url, others[scope])
            assert lacking.status_code == 403, (method, url, lacking.status_code)
            assert f"lacks the {scope!r} scope" in error_of(lacking)
        allowed = call(client, method, url, tokens[scope])
        assert allowed.status_code not in (401, 403), (method, url, allowed.get_data(as_text=True)[:300])
        checked += 1
    assert checked >= 40


def test_models_are_changed_only_by_their_owner_or_an_admin(closed, tmp_path):
    hub, app = closed
    admin = hub.principal((hub.config.home / "admin-token").read_text().strip())
    alice, bob = (
        hub.create_token(admin, {"owner": who, "scopes": ["read", "publish", "deploy"]})["token"]
        for who in ("alice", "bob")
    )
    client = app.test_client()

    def publish(token, version):
        root = onnx_package(tmp_path / f"a-{version}", name="alices", version=version)
        headers = {"Authorization": f"Bearer {token}", "Content-Type": "application/gzip"}
        return client.post("/api/v1/models", data=archive(root).read(), headers=headers)

    assert publish(alice, "1.0.0").status_code == 201
    owner = client.get("/api/v1/models/alices", headers={"Authorization": f"Bearer {bob}"}).get_json()[
        "owner"
    ]
    assert owner == "alice"
    refused = publish(bob, "1.1.0")
    assert refused.status_code == 403 and "belongs to 'alice'" in refused.get_json()["error"]
    for method, url, body in [
        ("POST", "/api/v1/models/alices/deploy", None),
        ("POST", "/api/v1/models/alices/undeploy", None),
        ("PUT", "/api/v1/models/alices/aliases/production", {"version": "1.0.0"}),
        ("POST", "/api/v1/models/alices/alerts", {"when": "error_rate > 5%"}),
    ]:
        reply = client.open(url, method=method, json=body, headers={"Authorization": f"Bearer {bob}"})
        assert reply.status_code == 403, (url, reply.get_json())
    assert publish(alice, "1.1.0").status_code == 201
    moved = admin_client(app).put("/api/v1/models/alices/aliases/staging", json={"version": "1.0.0"})
    assert moved.status_code in (200, 202)


def test_tokens_are_created_listed_revoked_and_stored_hashed(closed):
    hub, app = closed
    client = admin_client(app)
    made = client.post("/api/v1/tokens", json={"owner": "carol", "scopes": ["read", "predict"], "note": "ci"})
    assert made.status_code == 201
    token = made.get_json()["token"]
    assert token.startswith("aid_") and len(token) > 30
    assert all(token not in str(v) for row in TokenRow.select().dicts() for v in row.values())
    carol = app.test_client()
    carol.environ_base["HTTP_AUTHORIZATION"] = f"Bearer {token}"
    assert carol.get("/api/v1/whoami").get_json() == {
        "owner": "carol",
        "scopes": ["predict", "read"],
        "token": made.get_json()["id"],
    }
    assert [t["owner"] for t in carol.get("/api/v1/tokens").get_json()["tokens"]] == ["carol"]
    beyond = carol.post("/api/v1/tokens", json={"scopes": ["publish"]})
    assert beyond.status_code == 403
    for_someone = carol.post("/api/v1/tokens", json={"owner": "dave", "scopes": ["read"]})
    assert for_someone.status_code == 403
    assert carol.delete(f"/api/v1/tokens/{made.get_json()['id']}").status_code == 200
    gone = carol.get("/api/v1/tokens")
    assert gone.status_code == 401 and "unknown, revoked or expired" in gone.get_json()["error"]


def test_an_expired_token_is_refused(closed):
    hub, app = closed
    admin = hub.principal((hub.config.home / "admin-token").read_text().strip())
    made = hub.create_token(admin, {"owner": "erin", "scopes": ["read"], "expires": "1d"})
    TokenRow.update(expires_at=utcnow()).where(TokenRow.id == made["id"]).execute()
    reply = app.test_client().get("/api/v1/models", headers={"Authorization": f"Bearer {made['token']}"})
    assert reply.status_code == 401


def test_predict_through_the_fast_path_checks_the_scope(closed):
    hub, app = closed
    admin = hub.principal((hub.config.home / "admin-token").read_text().strip())
    predictor = hub.create_token(admin, {"owner": "pat", "scopes": ["predict"]})["token"]
    body = {"inputs": {"x": [[1.0, 2.0]]}}
    anonymous = app.test_client().post("/api/v1/models/doubler/predict", json=body)
    assert anonymous.status_code == 401
    allowed = app.test_client().post(
        "/api/v1/models/doubler/predict", json=body, headers={"Authorization": f"Bearer {predictor}"}
    )
    assert allowed.status_code == 503  # past the check: the model is not deployed


def test_the_first_start_writes_one_admin_token_for_the_local_cli(open_hub, tmp_path, database_url):
    hub = open_hub(tmp_path / "home", database_url)
    path = tmp_path / "home" / "admin-token"
    first = path.read_text()
    assert oct(path.stat().st_mode & 0o777) == "0o600" and first.startswith("aid_")
    hub.close()
    hub = open_hub(tmp_path / "home", database_url)
    assert path.read_text() == first and TokenRow.select().count() == 1
    hub.close()


def test_anonymous_scopes_are_a_setting(tmp_path):
    assert Config.load(env={}, home=tmp_path).anonymous_scopes == ("read", "predict", "feedback")
    assert Config.load(env={"AIDHUB_ANONYMOUS": ""}, home=tmp_path).anonymous_scopes == ()
    with pytest.raises(SettingInvalid, match="AIDHUB_ANONYMOUS='read,admin' names admin"):
        Config.load(env={"AIDHUB_ANONYMOUS": "read,admin"}, home=tmp_path)


def test_the_cli_creates_lists_and_revokes_tokens_and_logs_in(tmp_path):
    hub = HubProcess(tmp_path / "home", extra_env={"AIDHUB_ANONYMOUS": ""}).start()
    config = tmp_path / "config"
    env = {**hub.env, "XDG_CONFIG_HOME": str(config)}
    try:

        def aid(*args, **extra):
            return subprocess.run([AID, "--hub", hub.url, *args], capture_output=True, text=True,
                                  env={**env, **extra}, timeout=60)  # fmt: skip

        made = aid("token", "create", "--owner", "frank", "--scope", "read,publish")
        assert made.returncode == 0, made.stderr
        token = made.stdout.strip()
        assert "It is shown once" in made.stderr
        listed = aid("token", "list").stdout
        assert re.search(r"frank\s+aid_\S+\.\.\.\s+publish,read\s+active", listed), listed
        no_home = {"AIDHUB_HOME": str(tmp_path / "elsewhere")}  # no local admin token to fall back on
        assert aid("list", **no_home).returncode == 1  # 401: anonymous may not read here
        login = aid("login", "--token", token, **no_home)
        assert login.returncode == 0 and "Signed in" in login.stdout and "as frank" in login.stdout
        stored = config / "aidhub" / "tokens.json"
        assert oct(stored.stat().st_mode & 0o777) == "0o600"
        assert aid("list", **no_home).returncode == 0
        token_id = re.search(r"^\s+(\d+)\s+frank", listed, re.M).group(1)
        assert aid("token", "revoke", token_id).returncode == 0
        refused = aid("list", **no_home)
        assert refused.returncode == 1 and "revoked" in refused.stderr
    finally:
        hub.stop()
