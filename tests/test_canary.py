"""Canary aliases on a real hub: `doubler` 1.0.0 and 1.1.0 served by real model servers (the process
runner, shared test caches), 1.2.0 published and never deployed; one hub per module and backend
(SQLite, then PostgreSQL). The use cases, the JSON API and the `aid` CLI over real HTTP."""

from __future__ import annotations

import subprocess
import threading
import time
from collections import Counter

import pytest
from werkzeug.serving import make_server

from hub.errors import BadInput, Conflict
from tests.conftest import admin_client
from tests.hubserver import AID, cache_env
from tests.packages import archive, onnx_package
from vocab.states import FINAL, BuildStatus

INPUTS = {"x": [[1.0, 2.0]]}
CALLS = 400


@pytest.fixture(scope="module")
def hub(open_hub, module_database_url, tmp_path_factory):
    root = tmp_path_factory.mktemp("canary")
    hub = open_hub(root / "home", module_database_url)
    for version in ("1.0.0", "1.1.0", "1.2.0"):
        hub.publish(archive(onnx_package(root / version, version=version)))
    for version in ("1.0.0", "1.1.0"):
        build = wait_for_build(hub, hub.deploy("doubler", version)["build"]["id"])
        assert build["status"] == BuildStatus.SUCCEEDED, build["log"][-3000:]
    yield hub
    for version in ("1.0.0", "1.1.0"):
        hub.undeploy("doubler", version)
    hub.close()


def wait_for_build(hub, build_id: int, timeout: float = 300) -> dict:
    deadline = time.monotonic() + timeout
    while (build := hub.build(build_id))["status"] not in FINAL:
        assert time.monotonic() < deadline, f"build {build_id} still {build['status']} after {timeout}s"
        time.sleep(0.2)
    return build


@pytest.fixture
def split(hub):
    """production: 1.0.0=80,1.1.0=20, set afresh for each test."""
    hub.set_alias("doubler", "production", "1.0.0")
    return hub.set_alias("doubler", "production", "1.0.0=80,1.1.0=20")


def versions_of(hub, calls: int, client: str = "", ref: str | None = None) -> Counter:
    return Counter(hub.predict("doubler", ref, INPUTS, client=client)["version"] for _ in range(calls))


def requests_of(hub, version: str) -> int:
    hub.predlog.flush()
    return hub.scorecard("doubler", version, window="all")["requests"]


def test_calls_are_split_close_to_the_weights_and_each_scorecard_counts_its_share(hub, split):
    assert (split["version"], split["weights"], split["moved"]) == ("1.0.0", {"1.0.0": 80, "1.1.0": 20}, True)
    before = {v: requests_of(hub, v) for v in ("1.0.0", "1.1.0")}
    counts = versions_of(hub, CALLS)
    assert 52 <= counts["1.1.0"] <= 108, counts  # 80 expected; 3.5 standard deviations either side
    named = versions_of(hub, 50, ref="production")  # through the alias by its name
    assert named.keys() == {"1.0.0", "1.1.0"}
    assert versions_of(hub, 20, ref="1.1.0") == {"1.1.0": 20}  # a version number is not split
    counts += named + Counter({"1.1.0": 20})
    assert {v: requests_of(hub, v) - before[v] for v in before} == dict(counts)


def test_a_client_key_stays_on_one_version_and_keys_spread_by_the_weights(hub, split):
    for key in ("alice", "bob", "carol"):
        assert len(versions_of(hub, 15, client=key)) == 1, key
    firsts = Counter(hub.predict("doubler", None, INPUTS, client=f"user-{i}")["version"] for i in range(200))
    assert 20 <= firsts["1.1.0"] <= 60, firsts  # 40 expected


@pytest.mark.parametrize(
    "weights, message",
    [
        ("1.0.0=90,1.1.0=20", "The weights 1.0.0=90,1.1.0=20 add up to 110, not 100"),
        ("1.0.0=90,1.2.0=10", "doubler 1.2.0 does not serve, so production cannot send calls to it; the "
         "alias is unchanged. Deploy it first (aid deploy doubler@1.2.0), then try again."),
    ],
)  # fmt: skip
def test_bad_weights_are_refused_and_the_alias_is_unchanged(hub, split, weights, message):
    with pytest.raises(BadInput) as caught:
        hub.set_alias("doubler", "production", weights)
    assert caught.value.status == 422 and caught.value.message.startswith(message)
    model = hub.model("doubler")
    assert model["aliases"]["production"] == "1.0.0"
    assert model["weights"].get("production") == {"1.0.0": 80, "1.1.0": 20}


def test_promote_moves_every_call_and_rollback_moves_them_back_once(hub, split):
    promoted = hub.promote("doubler", "1.1.0")
    assert (promoted["version"], promoted["weights"]) == ("1.1.0", None)
    assert "production" not in hub.model("doubler")["weights"]
    assert versions_of(hub, 30) == {"1.1.0": 30}
    back = hub.rollback("doubler")
    assert (back["version"], back["weights"]) == ("1.0.0", {"1.0.0": 80, "1.1.0": 20})
    assert versions_of(hub, 100).keys() == {"1.0.0", "1.1.0"}
    with pytest.raises(Conflict, match="doubler@production has no earlier assignment to go back to"):
        hub.rollback("doubler")
    assert hub.model("doubler")["weights"]["production"] == {"1.0.0": 80, "1.1.0": 20}


def test_a_split_alias_keeps_its_versions_from_being_retired(hub, split):
    assert hub.catalog.aliases_of(hub.catalog.resolve("doubler", "1.1.0")) == ["production"]
    assert hub.catalog.aliases_of(hub.catalog.resolve("doubler", "1.2.0")) == []


# --- the JSON API ------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def app(hub):
    from web.app import create_app

    return create_app(hub=hub)


@pytest.fixture
def client(app):
    return admin_client(app)


def test_api_splits_promotes_and_rolls_back(client, split):
    put = client.put("/api/v1/models/doubler/aliases/staging", json={"weights": {"1.1.0": 30, "1.0.0": 70}})
    assert (put.status_code, put.get_json()["weights"]) == (200, {"1.1.0": 30, "1.0.0": 70})
    assert client.get("/api/v1/models/doubler").get_json()["weights"]["staging"] == {"1.1.0": 30, "1.0.0": 70}
    promoted = client.post("/api/v1/models/doubler/aliases/staging/promote", json={"version": "1.1.0"})
    assert (promoted.status_code, promoted.get_json()["version"]) == (200, "1.1.0")
    back = client.post("/api/v1/models/doubler/aliases/staging/rollback")
    assert (back.status_code, back.get_json()["weights"]) == (200, {"1.1.0": 30, "1.0.0": 70})
    again = client.post("/api/v1/models/doubler/aliases/staging/rollback")
    assert (again.status_code, again.get_json()["status"]) == (409, 409)


def test_api_refuses_bad_weights_with_422_and_keeps_the_alias(client, split):
    reply = client.put("/api/v1/models/doubler/aliases/production", json={"version": "1.0.0=50,1.1.0=40"})
    assert reply.status_code == 422
    assert reply.get_json()["error"].startswith("The weights 1.0.0=50,1.1.0=40 add up to 90, not 100")
    assert client.get("/api/v1/models/doubler").get_json()["weights"]["production"] == {
        "1.0.0": 80,
        "1.1.0": 20,
    }


def test_the_client_header_keeps_a_caller_on_one_version(client, split):
    path, headers = "/api/v1/models/doubler/predict", {"X-Aidhub-Client": "device-42"}
    seen = {
        client.post(path, json={"inputs": INPUTS}, headers=headers).get_json()["version"] for _ in range(15)
    }
    assert len(seen) == 1


# --- the CLI, over real HTTP ---------------------------------------------------------------------


@pytest.fixture(scope="module")
def aid(app, hub):
    server = make_server("127.0.0.1", 0, app, threaded=True)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    url, token = (
        f"http://127.0.0.1:{server.server_port}",
        (hub.config.home / "admin-token").read_text().strip(),
    )

    def aid(*args: str) -> subprocess.CompletedProcess:
        env = {**cache_env(), "PATH": "/usr/bin:/bin", "AIDHUB_TOKEN": token, "HOME": str(hub.config.home)}
        return subprocess.run([AID, "--hub", url, *args], capture_output=True, text=True, timeout=60, env=env)

    yield aid
    server.shutdown()


def test_cli_alias_promote_rollback_and_their_exit_codes(aid, split):
    done = aid("alias", "doubler", "production", "1.0.0=90,1.1.0=10")
    assert (done.returncode, done.stdout) == (0, "doubler@production -> 1.0.0=90,1.1.0=10\n"), done.stderr
    assert "production -> 1.0.0=90,1.1.0=10" in aid("show", "doubler").stdout
    bad = aid("alias", "doubler", "production", "1.0.0=90,1.1.0=5")
    assert (bad.returncode, bad.stderr) == (
        2, "Error: The weights 1.0.0=90,1.1.0=5 add up to 95, not 100; change them so they do, e.g. "
        "1.0.0=90,1.1.0=10.\n",
    )  # fmt: skip
    idle = aid("alias", "doubler", "production", "1.0.0=90,1.2.0=10")
    assert idle.returncode == 2 and "doubler 1.2.0 does not serve" in idle.stderr
    promoted = aid("promote", "doubler", "1.1.0")
    assert (promoted.returncode, promoted.stdout) == (0, "doubler@production -> 1.1.0\n"), promoted.stderr
    back = aid("rollback", "doubler")
    assert (back.returncode, back.stdout) == (0, "doubler@production -> 1.0.0=90,1.1.0=10\n"), back.stderr
    again = aid("rollback", "doubler")
    assert again.returncode == 1 and "has no earlier assignment to go back to" in again.stderr
