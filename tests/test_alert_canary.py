"""Canary rules on real tables: a canary of a split alias judged against its base over the rule's window
(`canary_error_rate > base + 5%`), and the `rollback` action, which sends every call of the alias back
to its base once, says so in the alert history, the alias history, the API and the model page. On
SQLite and PostgreSQL; a version "serves" through a ready deployment row (no model server is needed:
only calls and feedback in the rollups)."""

from __future__ import annotations

from datetime import timedelta

import pytest

from hub.errors import Conflict
from monitor.alerts import canary_values
from tests.test_alerts import calls, judged, serve
from vocab.alerts import ConditionInvalid, parse_condition, parse_rule
from vocab.times import utcnow

RULE = "canary_error_rate > base + 5%"
ROLLED = "rolled production back to 1.0.0 (was 1.0.0=90,1.1.0=10)"


@pytest.fixture
def hub(open_hub, tmp_path, database_url):
    """A hub that neither watches servers nor evaluates rules by itself: the tests evaluate."""
    (tmp_path / "home").mkdir()
    hub = open_hub(tmp_path / "home", database_url, watch_seconds=0, alert_every_seconds=0)
    yield hub
    hub.close()


@pytest.fixture
def split(hub, publish):
    """demo-adder 1.0.0 and 1.1.0 serving, production split 1.0.0=90,1.1.0=10; their version ids."""
    publish()
    publish(version="1.1.0")
    ids = serve(hub, version="1.0.0"), serve(hub, version="1.1.0")
    hub.set_alias("demo-adder", "production", "1.0.0")
    hub.set_alias("demo-adder", "production", "1.0.0=90,1.1.0=10")
    return ids


def production(hub) -> tuple[str, dict | None]:
    model = hub.model("demo-adder")
    return model["aliases"]["production"], model["weights"].get("production")


# --- the grammar ---------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "text, parsed",
    [
        (
            "canary_error_rate > base + 5%",
            ("canary_error_rate", ">", 0.05, "canary_error_rate > base + 0.05"),
        ),
        ("canary_accuracy<base-0.1", ("canary_accuracy", "<", -0.1, "canary_accuracy < base - 0.1")),
        ("canary_p95_ms >= base", ("canary_p95_ms", ">=", 0.0, "canary_p95_ms >= base")),
    ],
)
def test_canary_conditions_parse_to_a_signed_margin_over_the_base(text, parsed):
    c = parse_condition(text)
    assert (c.metric, c.op, c.threshold, c.text) == parsed


@pytest.mark.parametrize(
    "text, message",
    [
        ("canary_error_rate > 5%", "canary_error_rate compares the canary with its base: write "
         "canary_error_rate OP base [+|- NUMBER], e.g. 'canary_error_rate > base + 2%', not "
         "'canary_error_rate > 5%'."),
        ("canary_latency > base", "Unknown metric 'canary_latency' in 'canary_latency > base'; use one of "
         "accuracy, accuracy_low, error_rate, p95_ms, drift_share, requests, canary_error_rate, "
         "canary_p95_ms, canary_accuracy."),
        ("canary_accuracy < base - 150%", "canary_accuracy is a ratio from 0 to 1; '150%' in "
         "'canary_accuracy < base - 150%' is outside it (0.8 or 80%)."),
    ],
)  # fmt: skip
def test_a_bad_canary_condition_says_how_to_write_it(text, message):
    with pytest.raises(ConditionInvalid) as caught:
        parse_condition(text)
    assert (caught.value.field, caught.value.message) == ("when", message)


def test_rollback_is_an_action_of_canary_rules_only():
    assert parse_rule(RULE, action="rollback").to_dict()["action"] == "rollback"
    assert "action" not in parse_rule("error_rate > 0.1").to_dict()
    with pytest.raises(ConditionInvalid) as caught:
        parse_rule("error_rate > 0.1", action="rollback")
    assert caught.value.field == "action" and "needs a canary condition" in caught.value.message
    with pytest.raises(ConditionInvalid, match="Unknown action 'page'; use rollback"):
        parse_rule(RULE, action="page")


# --- judged on real rollups ----------------------------------------------------------------------


def test_canary_values_wait_for_enough_calls_and_feedback(hub, split):
    base, canary = split
    now = utcnow()
    calls(base, 100, errors=1, at=now)
    calls(canary, 19, errors=19, at=now)
    cards = [hub.scorecard("demo-adder", v, window="1h") for v in ("1.1.0", "1.0.0")]
    assert canary_values("canary_error_rate", *cards) is None  # 19 calls: too few to judge
    calls(canary, 1, errors=0, at=now)
    cards = [hub.scorecard("demo-adder", v, window="1h") for v in ("1.1.0", "1.0.0")]
    assert canary_values("canary_error_rate", *cards) == (0.95, 0.01)
    assert canary_values("canary_accuracy", *cards) is None  # no judged feedback
    judged(canary, 10, 10, at=now)
    judged(base, 19, 1, at=now)
    cards = [hub.scorecard("demo-adder", v, window="1h") for v in ("1.1.0", "1.0.0")]
    assert canary_values("canary_accuracy", *cards) == (0.5, 0.95)


def test_a_worse_canary_fires_and_is_rolled_back_once(hub, split):
    base, canary = split
    rule = hub.add_alert("demo-adder", RULE, action="rollback")
    now = utcnow().replace(microsecond=0)
    calls(base, 180, errors=2, at=now)
    calls(canary, 20, errors=4, at=now)  # 20% against 1.1%
    [fired] = hub.evaluate_alerts(now)
    assert (fired["version"], fired["state"], fired["value"]) == ("1.1.0", "firing", 0.2)
    assert fired["threshold"] == pytest.approx(0.0111 + 0.05)  # the base's error rate (4 places) + 5%
    assert (fired["action"], fired["outcome"]) == ("rollback", ROLLED)
    assert production(hub) == ("1.0.0", None)
    [resolved] = hub.evaluate_alerts(now + timedelta(minutes=1))  # 1.1.0 takes no calls of the alias now
    assert (resolved["version"], resolved["previous"], resolved["state"]) == ("1.1.0", "firing", "resolved")
    assert hub.evaluate_alerts(now + timedelta(minutes=2)) == []
    alerts = hub.alerts("demo-adder")
    assert [(e["state"], e["outcome"]) for e in alerts["history"]] == [("resolved", None), ("firing", ROLLED)]
    assert (alerts["rules"][0]["action"], alerts["rules"][0]["versions"]) == ("rollback", [])
    changes = hub.alias_history("demo-adder")["changes"]
    assert [(c["before"], c["after"], c["by"]) for c in changes] == [
        ("1.0.0=90,1.1.0=10", "1.0.0", f"alert rule #{rule['id']}"),
        ("1.0.0", "1.0.0=90,1.1.0=10", "alias"),
        (None, "1.0.0", "alias"),
    ]


def test_a_canary_as_good_as_its_base_or_an_alias_not_split_is_left_alone(hub, split):
    base, canary = split
    hub.add_alert("demo-adder", RULE, action="rollback")
    now = utcnow().replace(microsecond=0)
    calls(base, 180, errors=9, at=now)
    calls(canary, 20, errors=2, at=now)  # 10% against 5%: within the margin
    assert hub.evaluate_alerts(now) == []
    assert production(hub) == ("1.0.0", {"1.0.0": 90, "1.1.0": 10})
    hub.promote("demo-adder", "1.0.0")  # not split: nothing to judge, nothing to roll back
    calls(canary, 20, errors=20, at=now)
    assert hub.evaluate_alerts(now + timedelta(minutes=1)) == []
    assert hub.alerts("demo-adder")["rules"][0]["versions"] == []


def test_a_rule_without_the_action_fires_and_leaves_the_alias(hub, split):
    base, canary = split
    hub.add_alert("demo-adder", "canary_accuracy < base - 10%")
    now = utcnow().replace(microsecond=0)
    judged(base, 19, 1, at=now)
    judged(canary, 14, 6, at=now)  # 70% against 95%
    [fired] = hub.evaluate_alerts(now)
    assert (fired["state"], fired["value"], fired["action"], fired["outcome"]) == ("firing", 0.7, None, None)
    assert production(hub) == ("1.0.0", {"1.0.0": 90, "1.1.0": 10})


def test_a_slow_canary_fires_on_p95(hub, split):
    base, canary = split
    hub.add_alert("demo-adder", "canary_p95_ms > base + 50", action="rollback")
    now = utcnow().replace(microsecond=0)
    calls(base, 50, latency_ms=5.0, at=now)
    calls(canary, 30, latency_ms=400.0, at=now)
    [fired] = hub.evaluate_alerts(now)
    assert (fired["state"], fired["outcome"]) == ("firing", ROLLED)
    assert fired["value"] > fired["threshold"] > 50


def test_rolling_back_a_canary_the_alias_left_is_refused(hub, split):
    hub.promote("demo-adder", "1.1.0")
    with pytest.raises(Conflict) as caught:
        hub.roll_back_canary("demo-adder", "production", "1.1.0", by="alert rule #1")
    assert (
        caught.value.message
        == "demo-adder@production no longer sends calls to canary 1.1.0 (it points at one version)."
    )
    assert production(hub) == ("1.1.0", None)


# --- the API, aid.yaml and the model page --------------------------------------------------------


def test_the_api_takes_the_action_and_refuses_it_on_a_plain_rule(client, publish):
    publish()
    added = client.post("/api/v1/models/demo-adder/alerts", json={"when": RULE, "action": "rollback"})
    assert (added.status_code, added.json["action"], added.json["condition"]) == (
        201, "rollback", "canary_error_rate > base + 0.05",
    )  # fmt: skip
    bad = client.post("/api/v1/models/demo-adder/alerts", json={"when": "p95_ms > 9", "action": "rollback"})
    assert bad.status_code == 422
    assert bad.json["error"].startswith("action 'rollback' rolls a split alias back to its base")


def test_the_alias_history_says_the_rule_rolled_the_canary_back(client, hub, split):
    base, canary = split
    rule = hub.add_alert("demo-adder", RULE, action="rollback")
    now = utcnow().replace(microsecond=0)
    calls(base, 100, at=now)
    calls(canary, 20, errors=10, at=now)
    hub.evaluate_alerts(now)
    reply = client.get("/api/v1/models/demo-adder/aliases")
    assert reply.status_code == 200
    data = reply.get_json()
    assert (data["aliases"]["production"], data["weights"]) == ("1.0.0", {})
    latest = data["changes"][0]
    assert (latest["alias"], latest["before"], latest["after"], latest["by"]) == (
        "production", "1.0.0=90,1.1.0=10", "1.0.0", f"alert rule #{rule['id']}",
    )  # fmt: skip
    assert client.get("/api/v1/models/nope/aliases").status_code == 404


def test_aid_yaml_rules_carry_their_action(hub, publish):
    publish(alerts=[{"when": RULE, "for": "5m", "action": "rollback"}])
    [rule] = hub.alerts("demo-adder")["rules"]
    assert (rule["condition"], rule["for"], rule["action"], rule["source"]) == (
        "canary_error_rate > base + 0.05", "5m", "rollback", "aid.yaml",
    )  # fmt: skip


def test_the_model_page_says_what_the_rule_did(client, hub, split):
    base, canary = split
    hub.add_alert("demo-adder", RULE, action="rollback")
    now = utcnow().replace(microsecond=0)
    calls(base, 100, at=now)
    calls(canary, 20, errors=10, at=now)
    hub.evaluate_alerts(now)
    page = client.get("/models/demo-adder").get_data(as_text=True)
    assert "then rollback" in page and ROLLED in page


def test_an_alerts_table_of_an_older_hub_gets_the_action_columns(db):
    """A database whose alert tables were made before actions existed is brought up to date."""
    import monitor.alertmigrations  # noqa: F401 - registers the alerts' steps
    from database.migrations import AppliedMigration, migrate

    migrate(db)
    for table, column in [("monitor_alert_rule", "action"), ("monitor_alert_event", "action"),
                          ("monitor_alert_event", "outcome")]:  # fmt: skip
        db.execute_sql(f"ALTER TABLE {table} DROP COLUMN {column}")
    with db.bind_ctx([AppliedMigration]):
        AppliedMigration.delete().where(
            AppliedMigration.component == "alerts", AppliedMigration.number == 2
        ).execute()
    assert migrate(db) == ["alerts:2"]
    assert {"action"} <= {c.name for c in db.get_columns("monitor_alert_rule")}
    assert {"action", "outcome"} <= {c.name for c in db.get_columns("monitor_alert_event")}
