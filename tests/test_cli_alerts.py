"""`aid alert` as a user meets it: real `aid` processes against a real hub (`aid serve`, SQLite) whose
alert loop runs every second, exact terminal text and exit codes, and a real local webhook receiver."""

from __future__ import annotations

import hashlib
import hmac
import json
import subprocess

import pytest
from peewee import SqliteDatabase

from registry.models import DeploymentRow
from tests.hubserver import AID, HubProcess
from tests.packages import onnx_package
from tests.receiver import Receiver
from vocab.states import DeploymentStatus

PLAIN = "accuracy, accuracy_low, error_rate, p95_ms, drift_share, requests"
METRICS = PLAIN + ", canary_error_rate, canary_p95_ms, canary_accuracy"
FORMS = "'accuracy_low < 0.8', 'no traffic for 10m', or compare a canary with its base: "
FORMS += "'canary_error_rate > base + 2%'"


@pytest.fixture(scope="module")
def hub(tmp_path_factory):
    root = tmp_path_factory.mktemp("alerts")
    settings = {"AIDHUB_ALERT_EVERY": "1", "AIDHUB_WATCH_SECONDS": "0", "AIDHUB_WEBHOOK_SECRET": "hub-wide"}
    server = HubProcess(root / "home", extra_env=settings).start()
    published = server.aid("publish", str(onnx_package(root / "doubler")))
    assert published.returncode == 0, published.stdout + published.stderr
    yield server
    server.stop()


def test_add_list_and_remove_a_rule(hub):
    added = hub.aid("alert", "add", "doubler", "--when", "accuracy_low < 0.8", "--for", "10m",
                    "--webhook", "https://hooks.example/aidhub")  # fmt: skip
    assert (added.returncode, added.stderr) == (0, "")
    rule_id = int(added.stdout.split()[1])
    assert added.stdout == (
        f"Rule {rule_id} of doubler: accuracy_low < 0.8 for 10m over 1h, "
        "POST to https://hooks.example/aidhub (signed)\n"
    )
    listed = hub.aid("alert", "list", "doubler")
    assert listed.returncode == 0, listed.stderr
    assert (
        f"{rule_id}   accuracy_low < 0.8  10m  1h      ok (no version serves)  https://hooks.example/aidhub"
        in (listed.stdout)
    )
    as_json = json.loads(hub.aid("alert", "list", "doubler", "--json").stdout)
    assert [(r["id"], r["signed"]) for r in as_json["rules"]] == [(rule_id, True)]
    removed = hub.aid("alert", "rm", "doubler", str(rule_id))
    assert (removed.returncode, removed.stdout) == (0, f"Removed rule {rule_id} of doubler.\n")
    again = hub.aid("alert", "rm", "doubler", str(rule_id))
    assert (again.returncode, again.stderr) == (
        1,
        f"Error: Model 'doubler' has no alert rule {rule_id}. Its rules: none.\n",
    )


@pytest.mark.parametrize(
    "args, message",
    [
        (["--when", "latency > 3"], f"Unknown metric 'latency' in 'latency > 3'; use one of {METRICS}."),
        (["--when", "accuracy ~ 3"], "Condition 'accuracy ~ 3' is not understood; write METRIC OP NUMBER "
         f"(metrics: {PLAIN}; operators: < <= > >=), e.g. {FORMS}."),
        (["--when", "p95_ms > 250", "--webhook", "hooks.example"],
         "webhook 'hooks.example' is not an http(s) URL, e.g. https://hooks.example.com/aidhub."),
    ],
)  # fmt: skip
def test_a_bad_rule_exits_2_naming_it(hub, args, message):
    done = hub.aid("alert", "add", "doubler", *args)
    assert (done.returncode, done.stdout, done.stderr) == (2, "", f"Error: {message}\n")


def test_an_unreachable_hub_exits_1(tmp_path):
    done = subprocess.run([AID, "--hub", "http://127.0.0.1:9", "alert", "list", "doubler"],
                          capture_output=True, text=True, timeout=60)  # fmt: skip
    assert done.returncode == 1 and done.stderr.startswith("Error: No hub answers at http://127.0.0.1:9")


def test_a_package_with_a_bad_rule_is_not_published(hub, tmp_path):
    package = onnx_package(tmp_path / "bad", name="bad", alerts=[{"when": "error_rate > 2"}])
    done = hub.aid("publish", str(package))
    assert done.returncode == 2
    assert "  - alerts[0].when: error_rate is a ratio from 0 to 1; '2' in 'error_rate > 2' is outside it" in (
        done.stderr
    )


def test_the_hubs_own_loop_fires_and_posts_signed_with_the_hub_wide_secret(hub):
    receiver = Receiver()
    try:
        with SqliteDatabase(str(hub.home / "hub.db")).bind_ctx([DeploymentRow]):  # the version serves
            DeploymentRow.create(version=1, status=DeploymentStatus.READY, url="http://127.0.0.1:9")
        added = hub.aid("alert", "add", "doubler", "--when", "no traffic for 10m", "--webhook", receiver.url)
        assert added.returncode == 0, added.stderr
        (payload,) = receiver.wait_for(1)
        headers, body = receiver.received[0]
    finally:
        receiver.close()
    assert (payload["model"], payload["version"], payload["state"], payload["value"]) == (
        "doubler", "1.0.0", "firing", 0.0,
    )  # fmt: skip
    assert payload["links"]["alerts"] == f"{hub.url}/api/v1/models/doubler/alerts"
    assert (
        headers["X-Aidhub-Signature"] == "sha256=" + hmac.new(b"hub-wide", body, hashlib.sha256).hexdigest()
    )
    listed = hub.aid("alert", "list", "doubler").stdout
    assert "1.0.0 firing" in listed and "1.0.0: ok -> firing at 0, webhook delivered (1 attempt)" in listed
