"""Webhook delivery against real local HTTP receivers (http.server on a thread): the payload and its
HMAC signature, retries with backoff (each attempt recorded), a receiver that never answers, on SQLite
and PostgreSQL. Backoff and timeouts are shortened through the hub's config, not waited out."""

from __future__ import annotations

import hashlib
import hmac
import json
import time
from datetime import timedelta

import pytest

from hub.webhooks import Delivery, Webhooks
from registry.models import DeploymentRow
from tests.receiver import Receiver
from vocab.states import DeploymentStatus
from vocab.times import utcnow

SECRET = "s3cret"
BACKOFF = 0.05
TIMEOUT = 0.5


@pytest.fixture
def receivers():
    made: list[Receiver] = []

    def make(statuses=(), delay: float = 0.0) -> Receiver:
        made.append(Receiver(statuses, delay))
        return made[-1]

    yield make
    for receiver in made:
        receiver.close()


@pytest.fixture
def hub(open_hub, tmp_path, database_url):
    (tmp_path / "home").mkdir()
    hub = open_hub(
        tmp_path / "home", database_url, watch_seconds=0, alert_every_seconds=0, public_url="https://hub.example",
        webhook_attempts=3, webhook_backoff_seconds=BACKOFF, webhook_timeout_seconds=TIMEOUT,
    )  # fmt: skip
    yield hub
    hub.close()


@pytest.fixture
def serving(hub, publish) -> int:
    version = hub.catalog.resolve(publish()["model"], "1.0.0")
    DeploymentRow.create(version=version.id, status=DeploymentStatus.READY, url="http://127.0.0.1:9")
    return version.id


def settled(hub, count: int, timeout: float = 10.0) -> list[dict]:
    """The model's history once `count` changes exist and none is still being delivered (newest first)."""
    deadline = time.monotonic() + timeout
    while True:
        history = hub.alerts("demo-adder")["history"]
        if len(history) >= count and all(e["delivery"] != "pending" for e in history):
            return history
        assert time.monotonic() < deadline, history
        time.sleep(0.02)


def calls(version_id: int, count: int, errors: int, at) -> None:
    from monitor.rollups import Aggregate

    aggregate = Aggregate()
    for i in range(count):
        aggregate.add_prediction(version_id, at, 5.0, i >= errors)
    aggregate.save()


def test_firing_and_resolved_are_posted_signed_with_the_documented_payload(hub, serving, receivers):
    receiver = receivers()
    rule = hub.add_alert("demo-adder", "error_rate > 0.1", "10m", receiver.url, SECRET)
    now = utcnow().replace(microsecond=0)
    calls(serving, 10, errors=5, at=now)
    assert [c["state"] for c in hub.evaluate_alerts(now)] == ["pending"]  # not sent
    assert [c["state"] for c in hub.evaluate_alerts(now + timedelta(minutes=10))] == ["firing"]
    calls(serving, 90, errors=0, at=now)
    assert [c["state"] for c in hub.evaluate_alerts(now + timedelta(minutes=11))] == ["resolved"]
    history = settled(hub, 3)
    assert [(e["state"], e["delivery"], [a["status"] for a in e["attempts"]]) for e in history] == [
        ("resolved", "delivered", [200]), ("firing", "delivered", [200]), ("pending", "none", []),
    ]  # fmt: skip
    firing, resolved = receiver.payloads()
    links = {
        "model": "https://hub.example/models/demo-adder?version=1.0.0",
        "scorecard": "https://hub.example/api/v1/models/demo-adder/scorecard?version=1.0.0",
        "alerts": "https://hub.example/api/v1/models/demo-adder/alerts",
    }
    assert firing == {
        "id": history[1]["id"], "model": "demo-adder", "version": "1.0.0",
        "rule": {"id": rule["id"], "condition": "error_rate > 0.1", "for": "10m", "window": "1h"},
        "state": "firing", "previous": "pending", "value": 0.5, "threshold": 0.1,
        "time": (now + timedelta(minutes=10)).isoformat() + "Z", "action": None, "outcome": None,
        "links": links,
    }  # fmt: skip
    assert (resolved["state"], resolved["previous"], resolved["value"]) == ("resolved", "firing", 0.05)
    for headers, body in receiver.received:
        expected = "sha256=" + hmac.new(SECRET.encode(), body, hashlib.sha256).hexdigest()
        assert headers["X-Aidhub-Signature"] == expected
        assert (headers["Content-Type"], headers["X-Aidhub-Attempt"]) == ("application/json", "1")


def test_a_receiver_failing_twice_gets_it_on_the_third_attempt_each_one_recorded(hub, serving, receivers):
    receiver = receivers(statuses=[500, 503])
    hub.add_alert("demo-adder", "no traffic for 10m", webhook=receiver.url)
    assert [c["state"] for c in hub.evaluate_alerts()] == ["firing"]
    (event,) = settled(hub, 1)
    assert (event["delivery"], [(a["number"], a["status"]) for a in event["attempts"]]) == (
        "delivered", [(1, 500), (2, 503), (3, 200)],
    )  # fmt: skip
    assert [a["error"] for a in event["attempts"]] == ["HTTP 500 Internal Server Error",
                                                       "HTTP 503 Service Unavailable", None]  # fmt: skip
    assert [h["X-Aidhub-Attempt"] for h, _ in receiver.received] == ["1", "2", "3"]
    assert len({body for _, body in receiver.received}) == 1  # the same change, sent once successfully
    assert "X-Aidhub-Signature" not in receiver.received[0][0]  # no secret: unsigned


def test_a_client_error_is_not_retried_and_a_receiver_that_always_fails_is_given_up(hub, serving, receivers):
    refusing, broken = receivers(statuses=[404]), receivers(statuses=[500] * 5)
    hub.add_alert("demo-adder", "no traffic for 10m", webhook=refusing.url)
    hub.add_alert("demo-adder", "requests < 1", webhook=broken.url)
    hub.evaluate_alerts()
    history = {e["rule"]: e for e in settled(hub, 2)}
    assert [(e["delivery"], [a["status"] for a in e["attempts"]]) for _, e in sorted(history.items())] == [
        ("failed", [404]), ("failed", [500, 500, 500]),
    ]  # fmt: skip


def test_a_receiver_that_never_answers_delays_neither_evaluation_nor_other_webhooks(hub, serving, receivers):
    silent, quick = receivers(delay=30.0), receivers()
    never = hub.add_alert("demo-adder", "no traffic for 10m", webhook=silent.url)
    hub.add_alert("demo-adder", "requests < 1", webhook=quick.url)
    hub.evaluate_alerts()  # the silent receiver is now holding its first attempt
    hub.add_alert("demo-adder", "requests < 2", webhook=quick.url)
    start = time.monotonic()
    assert [c["state"] for c in hub.evaluate_alerts()] == ["firing"]
    assert time.monotonic() - start < TIMEOUT  # evaluating never waits for a webhook
    deadline = time.monotonic() + 5
    while len(quick.received) < 2:
        assert time.monotonic() < deadline, "the quick receiver waited on the silent one"
        time.sleep(0.02)
    slow = next(e for e in settled(hub, 3) if e["rule"] == never["id"])
    assert (slow["delivery"], [a["status"] for a in slow["attempts"]]) == ("failed", [None, None, None])
    assert all(a["error"].startswith("TimeoutError") and a["duration_ms"] >= TIMEOUT * 1000 * 0.9
               for a in slow["attempts"])  # fmt: skip


def test_a_delivery_left_pending_by_a_stopped_hub_is_sent_when_a_hub_starts(
    hub, serving, receivers, open_hub
):
    receiver = receivers()
    hub.add_alert("demo-adder", "no traffic for 10m", webhook=receiver.url)
    hub.webhooks.stop()  # as if the hub stopped before sending it
    hub.evaluate_alerts()
    assert hub.alerts("demo-adder")["history"][0]["delivery"] == "pending"
    hub.webhooks = Webhooks(hub.webhooks.record, hub.webhooks.finish, 3, BACKOFF, TIMEOUT)
    hub._start_alerts()
    (event,) = settled(hub, 1)
    assert (event["delivery"], len(receiver.received)) == ("delivered", 1)


def test_webhooks_sign_the_exact_body_they_send(receivers):
    receiver = receivers()
    outcomes = []
    hooks = Webhooks(lambda d, o: outcomes.append(o), lambda event_id, ok: None, attempts=1)
    body = json.dumps({"b": 1, "a": "é"}).encode()
    assert hooks.attempt(Delivery(7, receiver.url, body, "key")).delivered
    headers, received = receiver.received[0]
    assert received == body
    assert headers["X-Aidhub-Signature"] == "sha256=" + hmac.new(b"key", body, hashlib.sha256).hexdigest()
    assert (headers["X-Aidhub-Event"], outcomes[0].status_code) == ("7", 200)
