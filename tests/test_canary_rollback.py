"""A canary rolled back by an alert rule, as a user meets it: a real hub (`aid serve`, its alert loop
every second) on SQLite and on PostgreSQL, two real python model servers behind `production`
1.0.0=90,1.1.0=10 where the canary 1.1.0 fails on negative inputs, a rule added with `aid alert add
--action rollback`, live calls over HTTP, and a real webhook receiver. The rule fires, the alias ends on
1.0.0, once; `aid alert list`, the alias history, the webhook and `aid rollback` say so."""

from __future__ import annotations

import httpx
import pytest

from tests.hubserver import HubProcess, wait_for
from tests.packages import python_package
from tests.receiver import Receiver
from vocab.weights import bucket

NAME = "canaried"
# Fails on negative inputs only, so that its deploy's smoke test (its example, x = [1.0]) passes.
FAILING = """
    def predict(self, x):
        if x[0] < 0:
            raise ValueError("negative input")
        return {"y": [v * 2.0 for v in x]}
"""
RULE = "canary_error_rate > base + 0.1"
ROLLED = "rolled production back to 1.0.0 (was 1.0.0=90,1.1.0=10)"


@pytest.fixture(scope="module")
def hub(tmp_path_factory, module_database_url):
    root = tmp_path_factory.mktemp("canary-rollback")
    settings = {"AIDHUB_ALERT_EVERY": "1", "AIDHUB_DATABASE_URL": module_database_url}
    server = HubProcess(root / "home", workers=1, extra_env=settings).start()
    canary = python_package(root / "1.1.0", NAME, "1.1.0")
    (canary / "predict.py").write_text("class Model:\n    def setup(self):\n        pass\n" + FAILING)
    for folder in (python_package(root / "1.0.0", NAME, "1.0.0"), canary):
        done = server.aid("publish", str(folder), "--deploy")
        assert done.returncode == 0, done.stdout + done.stderr + server.output()
    yield server
    for version in ("1.0.0", "1.1.0"):
        server.aid("undeploy", f"{NAME}@{version}")
    server.stop()


@pytest.fixture(scope="module")
def http(hub):
    with httpx.Client(base_url=hub.url, headers=hub.headers, timeout=30) as client:
        yield client


@pytest.fixture
def receiver():
    receiver = Receiver()
    yield receiver
    receiver.close()


def keys(canary: bool, count: int) -> list[str]:
    """Client keys that production 1.0.0=90,1.1.0=10 sends to the canary (buckets 90-99), or to the base."""
    found = (f"client-{i}" for i in range(100_000))
    return [k for k in found if (bucket(k) >= 90) == canary][:count]


def production(http) -> tuple[str, dict | None]:
    model = http.get(f"/api/v1/models/{NAME}").json()
    return model["aliases"]["production"], model["weights"].get("production")


def test_a_failing_canary_is_rolled_back_to_its_base_once(hub, http, receiver):
    for target in ("1.0.0", "1.0.0=90,1.1.0=10"):
        assert hub.aid("alias", NAME, "production", target).returncode == 0
    added = hub.aid("alert", "add", NAME, "--when", "canary_error_rate > base + 10%", "--action", "rollback",
                    "--webhook", receiver.url)  # fmt: skip
    rule = int(added.stdout.split()[1])
    assert added.stdout == (
        f"Rule {rule} of {NAME}: {RULE} over 1h, POST to {receiver.url}, "
        "then roll the alias back to its base\n"
    ), added.stderr
    path = f"/api/v1/models/{NAME}/predict"

    def call(key: str, x: float) -> tuple[int, str | None]:
        reply = http.post(path, json={"inputs": {"x": [x]}}, headers={"X-Aidhub-Client": key})
        return reply.status_code, reply.json().get("version")

    assert {call(key, 1.0) for key in keys(False, 40)} == {(200, "1.0.0")}
    # The canary's calls alternate between good and failing inputs: its error rate is about 0.5 whenever
    # the loop looks, which may be before they all went out; from then on the base answers them.
    seen = [call(key, -1.0 if i % 2 else 1.0) for i, key in enumerate(keys(True, 40))]
    moved = seen.index((200, "1.0.0")) if (200, "1.0.0") in seen else len(seen)
    assert set(seen[:moved]) == {(200, "1.1.0"), (502, None)} and set(seen[moved:]) <= {(200, "1.0.0")}
    wait_for(lambda: production(http) == ("1.0.0", None), 30, "production back on 1.0.0")
    [fired] = receiver.wait_for(1)
    assert (fired["version"], fired["state"], fired["threshold"]) == ("1.1.0", "firing", 0.1)
    assert 0.4 <= fired["value"] <= 0.6, fired
    assert (fired["action"], fired["outcome"]) == ("rollback", ROLLED)
    calls = [
        http.post(path, json={"inputs": {"x": [-1.0]}}, headers={"X-Aidhub-Client": k}) for k in keys(True, 5)
    ]
    assert [(r.status_code, r.json()["version"]) for r in calls] == [(200, "1.0.0")] * 5
    resolved = receiver.wait_for(2)[1]
    assert (resolved["version"], resolved["previous"], resolved["state"]) == ("1.1.0", "firing", "resolved")
    listed = hub.aid("alert", "list", NAME)
    said = f"1.1.0: ok -> firing at {fired['value']:g}, webhook delivered (1 attempt); {ROLLED}"
    assert said in listed.stdout, listed.stdout
    assert "ok (no canary)" in listed.stdout and "rollback" in listed.stdout
    shown = hub.aid("alias", NAME)
    assert shown.stdout.startswith("latest -> 1.1.0\nproduction -> 1.0.0\n\nlatest changes\n"), shown.stdout
    assert f"  production  1.0.0=90,1.1.0=10 -> 1.0.0  (alert rule #{rule})\n" in shown.stdout
    again = hub.aid("rollback", NAME)  # the rule's rollback left nothing to go back to
    assert again.returncode == 1 and "has no earlier assignment to go back to" in again.stderr
    history = http.get(f"/api/v1/models/{NAME}/alerts").json()["history"]
    assert [(e["state"], e["outcome"]) for e in history] == [("resolved", None), ("firing", ROLLED)]
