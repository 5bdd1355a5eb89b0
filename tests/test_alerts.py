"""Alert rules: the grammar and the state machine (pure), then rules through the API, their evaluation
over real rollups, rules from `aid.yaml`, the catalog badge, the model page and /metrics, on SQLite and
PostgreSQL. A version "serves" here through a ready deployment row: no model server is needed to
evaluate rules, only its calls and feedback in the rollups."""

from __future__ import annotations

from datetime import datetime, timedelta

import pytest

from monitor import driftruns
from monitor.alerts import Step, holds, next_state
from monitor.feedback import record_feedback
from monitor.rollups import Aggregate
from registry.models import DeploymentRow
from vocab.alerts import AlertState, ConditionInvalid, parse_condition, parse_rule
from vocab.states import DeploymentStatus
from vocab.times import utcnow

OK, PENDING, FIRING, RESOLVED = AlertState
T0 = datetime(2026, 1, 5, 12, 0, 0)
TEN = timedelta(minutes=10)
PLAIN = "accuracy, accuracy_low, error_rate, p95_ms, drift_share, requests"
METRICS = PLAIN + ", canary_error_rate, canary_p95_ms, canary_accuracy"
FORMS = "'accuracy_low < 0.8', 'no traffic for 10m', or compare a canary with its base: "
FORMS += "'canary_error_rate > base + 2%'"


@pytest.fixture
def hub(open_hub, tmp_path, database_url):
    """A hub that neither watches servers nor evaluates rules by itself: the tests evaluate."""
    (tmp_path / "home").mkdir()
    hub = open_hub(tmp_path / "home", database_url, watch_seconds=0, alert_every_seconds=0)
    yield hub
    hub.close()


def serve(hub, name: str = "demo-adder", version: str = "1.0.0") -> int:
    """Mark a published version as serving (a ready deployment row); its id."""
    row = hub.catalog.resolve(name, version)
    DeploymentRow.create(version=row.id, status=DeploymentStatus.READY, url="http://127.0.0.1:9")
    return row.id


def calls(version_id: int, count: int, errors: int = 0, latency_ms: float = 5.0, at=None) -> None:
    aggregate = Aggregate()
    for i in range(count):
        aggregate.add_prediction(version_id, at or utcnow(), latency_ms, i >= errors)
    aggregate.save()


def judged(version_id: int, right: int, wrong: int, at=None) -> None:
    for i, correct in enumerate([True] * right + [False] * wrong):
        record_feedback(
            f"01JUDGED{version_id}X{i}", version_id, "demo-adder", correct=correct, now=at or utcnow()
        )


# --- the grammar ---------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "text, parsed",
    [
        ("accuracy < 0.8", ("accuracy", "<", 0.8, "accuracy < 0.8")),
        ("  accuracy_low<=0.75 ", ("accuracy_low", "<=", 0.75, "accuracy_low <= 0.75")),
        ("error_rate > 5%", ("error_rate", ">", 0.05, "error_rate > 0.05")),
        ("p95_ms >= 250", ("p95_ms", ">=", 250.0, "p95_ms >= 250")),
        ("drift_share > 0.3", ("drift_share", ">", 0.3, "drift_share > 0.3")),
        ("No traffic for 90m", ("requests", "<", 1.0, "no traffic for 90m")),
    ],
)
def test_conditions_parse_to_metric_operator_and_threshold(text, parsed):
    c = parse_condition(text)
    assert (c.metric, c.op, c.threshold, c.text) == parsed


@pytest.mark.parametrize(
    "text, message",
    [
        ("acc < 0.8", f"Unknown metric 'acc' in 'acc < 0.8'; use one of {METRICS}."),
        ("accuracy == 0.8", "Unknown operator '==' in 'accuracy == 0.8'; use one of < <= > >=."),
        ("accuracy < high", "'high' in 'accuracy < high' is not a number, e.g. 0.8 or 250."),
        ("accuracy < 80",
         "accuracy is a ratio from 0 to 1; '80' in 'accuracy < 80' is outside it (0.8 or 80%)."),
        ("p95_ms > -1", "'-1' in 'p95_ms > -1' must be a number >= 0."),
        ("no traffic for a while",
         "'a while' in 'no traffic for a while' is not a duration; write minutes, hours or days, e.g. 10m, "
         "1h or 1d."),
        ("accuracy is bad", "Condition 'accuracy is bad' is not understood; write METRIC OP NUMBER (metrics: "
         f"{PLAIN}; operators: < <= > >=), e.g. {FORMS}."),
    ],
)  # fmt: skip
def test_a_bad_condition_names_what_is_wrong_and_what_works(text, message):
    with pytest.raises(ConditionInvalid) as caught:
        parse_condition(text)
    assert (caught.value.field, caught.value.message) == ("when", message)


def test_a_rule_defaults_to_a_one_hour_window_and_no_wait():
    rule = parse_rule("error_rate > 0.1")
    assert (rule.for_, rule.window, rule.webhook) == (timedelta(0), timedelta(hours=1), None)
    assert parse_rule("no traffic for 2h", "10m").to_dict() == {
        "when": "no traffic for 2h", "for": "10m", "window": None, "webhook": None,
    }  # fmt: skip


@pytest.mark.parametrize(
    "parts, field",
    [
        ({"for_": "soon"}, "for"),
        ({"window": "0m"}, "window"),
        ({"webhook": "ftp://example.org/hook"}, "webhook"),
        ({"webhook": "not a url"}, "webhook"),
        ({"webhook": "https://<b>x</b>/hook"}, "webhook"),
    ],
)
def test_a_bad_rule_part_is_named(parts, field):
    with pytest.raises(ConditionInvalid) as caught:
        parse_rule("accuracy < 0.8", **parts)
    assert caught.value.field == field


# --- the state machine ---------------------------------------------------------------------------


def test_a_holding_condition_waits_in_pending_for_its_for_then_fires_and_resolves():
    assert next_state(OK, T0, True, T0, TEN) == Step(PENDING, T0)
    assert next_state(PENDING, T0, True, T0 + TEN - timedelta(seconds=1), TEN) == Step(PENDING, T0)
    assert next_state(PENDING, T0, True, T0 + TEN, TEN) == Step(FIRING, T0 + TEN)
    assert next_state(FIRING, T0 + TEN, True, T0 + 2 * TEN, TEN) == Step(FIRING, T0 + TEN)
    assert next_state(FIRING, T0 + TEN, False, T0 + 2 * TEN, TEN) == Step(RESOLVED, T0 + 2 * TEN)


def test_without_for_a_holding_condition_fires_at_once_and_resolved_is_a_remembering_ok():
    assert next_state(OK, T0, True, T0, timedelta(0)) == Step(FIRING, T0)
    assert next_state(RESOLVED, T0, False, T0 + TEN, timedelta(0)) == Step(RESOLVED, T0)
    assert next_state(RESOLVED, T0, True, T0 + TEN, TEN) == Step(PENDING, T0 + TEN)


def test_no_data_keeps_firing_firing_and_sends_pending_back_to_ok():
    assert next_state(FIRING, T0, None, T0 + TEN, TEN) == Step(FIRING, T0)
    assert next_state(PENDING, T0, None, T0 + TEN, TEN) == Step(OK, T0 + TEN)
    assert next_state(OK, T0, None, T0 + TEN, TEN) == Step(OK, T0)
    assert next_state(PENDING, T0, False, T0 + TEN, TEN) == Step(OK, T0 + TEN)


def test_holds_compares_and_gives_no_verdict_without_a_value():
    assert [holds("<", 0.7, 0.8), holds("<=", 0.8, 0.8), holds(">", 0.8, 0.8), holds(">=", 1, 0.8)] == [
        True, True, False, True,
    ]  # fmt: skip
    assert holds("<", None, 0.8) is None


# --- rules through the API -----------------------------------------------------------------------


def test_rules_are_added_listed_and_removed_through_the_api(client, publish):
    publish()
    added = client.post("/api/v1/models/demo-adder/alerts",
                        json={"when": "accuracy_low < 80%", "for": "10m", "webhook": "https://h.example/x",
                              "secret": "s3cret"})  # fmt: skip
    assert added.status_code == 201, added.json
    rule = added.json
    assert {k: rule[k] for k in ("condition", "metric", "op", "threshold", "for", "window", "state")} == {
        "condition": "accuracy_low < 0.8", "metric": "accuracy_low", "op": "<", "threshold": 0.8,
        "for": "10m", "window": "1h", "state": "ok",
    }  # fmt: skip
    assert (rule["webhook"], rule["signed"], rule["source"], "secret" in rule) == (
        "https://h.example/x", True, "api", False,
    )  # fmt: skip
    listed = client.get("/api/v1/models/demo-adder/alerts").json
    assert ([r["id"] for r in listed["rules"]], listed["firing"], listed["history"]) == ([rule["id"]], 0, [])
    gone = client.delete(f"/api/v1/models/demo-adder/alerts/{rule['id']}")
    assert (gone.status_code, gone.data) == (204, b"")
    assert client.get("/api/v1/models/demo-adder/alerts").json["rules"] == []


@pytest.mark.parametrize(
    "body, message",
    [
        ({"when": "latency > 3"}, f"Unknown metric 'latency' in 'latency > 3'; use one of {METRICS}."),
        ({"when": "error_rate = 1"}, "Unknown operator '=' in 'error_rate = 1'; use one of < <= > >=."),
        ({"when": "error_rate > 0.1", "for": "5 minutes"},
         "for '5 minutes' is not a duration; write minutes, hours or days, e.g. 10m, 1h or 1d."),
        ({"when": "error_rate > 0.1", "level": "page"},
         "Unknown alert field(s) level; use when, for, window, webhook, secret, action."),
        ({"when": 0.8}, '"when" must be text such as "10m" or "accuracy_low < 0.8", not 0.8.'),
    ],
)  # fmt: skip
def test_a_bad_rule_is_422_naming_it(client, publish, body, message):
    publish()
    reply = client.post("/api/v1/models/demo-adder/alerts", json=body)
    assert (reply.status_code, reply.json["error"], reply.json["errors"]) == (422, message, [])


def test_unknown_models_and_rules_are_404(client, publish):
    publish()
    assert client.get("/api/v1/models/nope/alerts").status_code == 404
    missing = client.delete("/api/v1/models/demo-adder/alerts/41")
    assert (missing.status_code, missing.json["error"]) == (
        404, "Model 'demo-adder' has no alert rule 41. Its rules: none.",
    )  # fmt: skip


# --- evaluation ----------------------------------------------------------------------------------


def test_error_rate_goes_pending_fires_after_its_for_and_resolves(hub, publish):
    publish()
    vid = serve(hub)
    rule = hub.add_alert("demo-adder", "error_rate > 0.1", "10m")
    now = utcnow()
    calls(vid, 10, errors=5, at=now)
    assert [(c["previous"], c["state"], c["value"]) for c in hub.evaluate_alerts(now)] == [
        ("ok", "pending", 0.5)
    ]
    assert hub.evaluate_alerts(now + timedelta(minutes=9)) == []
    assert [c["state"] for c in hub.evaluate_alerts(now + TEN)] == ["firing"]
    listed = hub.alerts("demo-adder")
    assert (listed["firing"], listed["rules"][0]["state"], listed["rules"][0]["versions"][0]["version"]) == (
        1, "firing", "1.0.0",
    )  # fmt: skip
    calls(vid, 90, at=now)  # 5 errors in 100 calls now
    assert [(c["state"], c["value"]) for c in hub.evaluate_alerts(now + TEN)] == [("resolved", 0.05)]
    assert hub.evaluate_alerts(now + 2 * TEN) == []
    history = hub.alerts("demo-adder")["history"]
    assert [(e["previous"], e["state"], e["rule"], e["delivery"]) for e in history] == [
        ("firing", "resolved", rule["id"], "none"), ("pending", "firing", rule["id"], "none"),
        ("ok", "pending", rule["id"], "none"),
    ]  # fmt: skip


def test_each_metric_reads_its_window_of_the_scorecard(hub, publish):
    publish()
    vid = serve(hub)
    now = utcnow()
    calls(vid, 20, latency_ms=400.0, at=now)
    calls(vid, 20, latency_ms=400.0, at=now - timedelta(hours=3))  # outside every window
    judged(vid, right=7, wrong=3, at=now)
    driftruns.record_run(vid, (now - TEN, now), "package", status="done", share=0.5)
    for when in ("accuracy < 0.75", "accuracy_low < 0.5", "p95_ms > 300", "drift_share >= 0.5",
                 "requests < 21", "error_rate > 0"):  # fmt: skip
        hub.add_alert("demo-adder", when)
    changes = {c["condition"]: (c["state"], c["value"]) for c in hub.evaluate_alerts(now)}
    assert changes == {
        "accuracy < 0.75": ("firing", 0.7), "accuracy_low < 0.5": ("firing", 0.3968),
        "p95_ms > 300": ("firing", changes["p95_ms > 300"][1]), "drift_share >= 0.5": ("firing", 0.5),
        "requests < 21": ("firing", 20.0),
    }  # fmt: skip
    assert 300 < changes["p95_ms > 300"][1] <= 494.749  # the 400 ms calls' bucket
    states = {r["condition"]: r["versions"][0]["value"] for r in hub.alerts("demo-adder")["rules"]}
    assert states["error_rate > 0"] == 0.0


def test_no_data_is_no_verdict_and_no_traffic_fires_when_calls_stop(hub, publish):
    publish()
    vid = serve(hub)
    hub.add_alert("demo-adder", "accuracy_low < 0.9")
    hub.add_alert("demo-adder", "no traffic for 10m")
    now = utcnow()
    assert [(c["condition"], c["state"]) for c in hub.evaluate_alerts(now)] == [
        ("no traffic for 10m", "firing")
    ]
    calls(vid, 3, at=now)
    assert [(c["condition"], c["state"]) for c in hub.evaluate_alerts(now)] == [
        ("no traffic for 10m", "resolved")
    ]
    values = [r["versions"][0]["value"] for r in hub.alerts("demo-adder")["rules"]]
    assert values == [None, 3.0]  # no judged feedback: the accuracy rule has no value, and stays ok


def test_only_serving_versions_are_evaluated_and_a_version_that_stops_is_resolved(hub, publish):
    publish()
    publish(version="1.1.0")
    vid = serve(hub, version="1.1.0")
    hub.add_alert("demo-adder", "no traffic for 10m")
    assert [(c["version"], c["state"]) for c in hub.evaluate_alerts()] == [("1.1.0", "firing")]
    assert hub.models()[0]["alerts_firing"] == 1 and hub.model("demo-adder")["alerts_firing"] == 1
    DeploymentRow.update(status=DeploymentStatus.STOPPED).where(DeploymentRow.version == vid).execute()
    assert [(c["version"], c["previous"], c["state"]) for c in hub.evaluate_alerts()] == [
        ("1.1.0", "firing", "resolved"),
    ]  # fmt: skip
    assert hub.alerts("demo-adder")["rules"][0]["versions"] == []
    assert hub.models()[0]["alerts_firing"] == 0


def test_alerts_firing_is_on_metrics_per_model_and_version(hub, publish, client):
    publish()
    serve(hub)
    hub.add_alert("demo-adder", "no traffic for 10m")
    hub.add_alert("demo-adder", "requests < 5")
    hub.add_alert("demo-adder", "error_rate > 0.5")
    hub.evaluate_alerts()
    text = client.get("/metrics").get_data(as_text=True)
    assert 'aidhub_alerts_firing{model="demo-adder",version="1.0.0"} 2.0' in text


# --- rules from aid.yaml -------------------------------------------------------------------------


def test_aid_yaml_alerts_become_the_models_rules_when_published(hub, publish):
    alerts = [{"when": "accuracy_low < 0.8", "for": "10m"}, {"when": "no traffic for 1h"}]
    publish(alerts=alerts)
    hub.add_alert("demo-adder", "p95_ms > 500")  # added by hand: a package never touches it
    rules = hub.alerts("demo-adder")["rules"]
    assert [(r["condition"], r["for"], r["window"], r["source"]) for r in rules] == [
        ("accuracy_low < 0.8", "10m", "1h", "aid.yaml"), ("no traffic for 1h", "0", "1h", "aid.yaml"),
        ("p95_ms > 500", "0", "1h", "api"),
    ]  # fmt: skip
    publish(version="1.1.0", alerts=[{"when": "accuracy_low < 0.8", "for": "10m"}])
    after = hub.alerts("demo-adder")["rules"]
    assert [r["condition"] for r in after] == ["accuracy_low < 0.8", "p95_ms > 500"]
    assert after[0]["id"] == rules[0]["id"]  # the same rule, kept with its states


def test_a_package_with_a_bad_alert_is_refused_naming_it(hub, publish):
    from hub.errors import Invalid

    with pytest.raises(Invalid) as caught:
        publish(alerts=[{"when": "accuracy < 0.8"}, {"when": "latency > 3", "secret": "x"}])
    assert caught.value.errors == [
        "alerts[1].secret: keep secrets out of packages: 'aid alert add --secret' or AIDHUB_WEBHOOK_SECRET "
        "on the hub sign webhooks",
        f"alerts[1].when: Unknown metric 'latency' in 'latency > 3'; use one of {METRICS}.",
    ]
    assert hub.models() == []


# --- pages ---------------------------------------------------------------------------------------


def test_the_catalog_card_and_the_model_page_show_what_fires(hub, publish, client):
    publish()
    serve(hub)
    hub.add_alert("demo-adder", "no traffic for 10m", webhook="https://hooks.example:8443/aidhub?k=v")
    hub.evaluate_alerts()
    catalog = client.get("/").get_data(as_text=True)
    assert '<span class="alerts-firing">1 alert firing</span>' in catalog
    page = client.get("/models/demo-adder").get_data(as_text=True)
    assert '<section id="alerts">' in page
    assert '<code>no traffic for 10m</code> <span class="rule-id">#1</span>' in page
    assert '1.0.0 <span class="alert-state alert-firing">firing</span> at 0, since' in page
    assert "<td>hooks.example:8443</td>" in page  # where it posts, not the URL's path or query
    assert '1.0.0: ok → <span class="alert-state alert-firing">firing</span> at 0 · webhook' in page
