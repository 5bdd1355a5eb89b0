"""Shadow versions without model servers, on SQLite and PostgreSQL: the comparison's figures on known
pairs of logged calls, shadow calls kept out of the scorecard, the mirror's bounded queue, and each bad
request to the API with its status and message (tests/test_shadow_serve.py runs real servers)."""

from __future__ import annotations

import threading
from datetime import timedelta

import pytest

from hub.errors import Invalid
from hub.shadow import Mirror, checked_share
from monitor.predlog import PredictionRecord
from monitor.shadows import shadow_id
from tests.hubserver import wait_for
from tests.page_reading import get, text_of
from vocab.times import utcnow

SHADOW = "/api/v1/models/demo-adder/shadow"


@pytest.fixture
def two(hub, publish):
    publish()
    publish(version="1.1.0")
    return hub


def log_pair(hub, live: dict, shadow: dict | None, latency=(2.0, 10.0), minutes_ago: int = 5) -> str:
    """A call 1.0.0 answered live with `live` and 1.1.0 in shadow with `shadow` (None: it failed)."""
    at = utcnow() - timedelta(minutes=minutes_ago)
    ids = {v: hub.catalog.resolve("demo-adder", v).id for v in ("1.0.0", "1.1.0")}
    pid = hub.predlog.record(
        PredictionRecord(ids["1.0.0"], "demo-adder", "1.0.0", latency[0], outputs=live, created_at=at)
    )
    failed = {"status": "error", "error": "boom"} if shadow is None else {}
    record = PredictionRecord(
        ids["1.1.0"], "demo-adder", "1.1.0", latency[1], source="shadow", outputs=shadow, id=shadow_id(pid),
        created_at=at, **failed,
    )  # fmt: skip
    hub.predlog.record(record)
    return pid


def test_agreement_difference_latency_errors_and_accuracy_on_known_pairs(two):
    cat = [
        log_pair(two, {"label": "cat", "p": [0.9]}, {"label": "cat", "p": [0.7]}, (2.0, 10.0)),
        log_pair(two, {"label": "dog", "p": [0.6]}, {"label": "cat", "p": [0.5]}, (4.0, 20.0)),
        log_pair(two, {"label": "cat", "p": [0.8]}, None, (6.0, 100.0)),
        log_pair(two, {"label": "cat", "p": [0.8]}, {"label": "cat", "p": [0.8]}, (8.0, 40.0)),
    ]
    log_pair(two, {"label": "cat", "p": [0.1]}, {"label": "dog", "p": [0.1]}, minutes_ago=3 * 1440)
    two.predlog.flush()
    two.feedback(cat[0], {"label": "cat"})  # both right
    two.feedback(cat[1], {"label": "cat"})  # live wrong, shadow right
    two.feedback(cat[3], {"correct": True})  # the same answer: both right
    figures = two.compare_versions("demo-adder", "1.0.0", "1.1.0", "24h")
    assert (figures["pairs"], figures["compared_labels"], figures["compared_numbers"]) == (4, 3, 3)
    assert figures["agreement"] == pytest.approx(2 / 3)
    assert figures["mean_abs_diff"] == pytest.approx((0.2 + 0.1 + 0.0) / 3)
    live, shadow = figures["sides"]
    assert (live["version"], live["calls"], live["shadow"], live["errors"]) == ("1.0.0", 4, 0, 0)
    assert (shadow["version"], shadow["calls"], shadow["shadow"], shadow["errors"]) == ("1.1.0", 4, 4, 1)
    assert live["latency_ms"] == {"p50": 5.0, "mean": 5.0}
    assert shadow["latency_ms"] == {"p50": 20.0, "mean": pytest.approx(70 / 3)}  # the failed call left out
    assert (live["feedback"], live["accuracy"]) == (3, pytest.approx(2 / 3))
    assert (shadow["feedback"], shadow["accuracy"]) == (3, 1.0)
    every = two.compare_versions("demo-adder", "1.1.0", "1.0.0", "all")
    assert every["pairs"] == 5 and [s["version"] for s in every["sides"]] == ["1.1.0", "1.0.0"]
    assert every["agreement"] == pytest.approx(2 / 4)


def test_shadow_calls_stay_out_of_the_shadow_versions_scorecard(two):
    log_pair(two, {"y": [[1.0, 2.0]]}, {"y": [[1.0, 2.5]]})
    two.predlog.flush()
    assert two.scorecard("demo-adder", "1.0.0")["requests"] == 1
    assert two.scorecard("demo-adder", "1.1.0")["requests"] == 0
    figures = two.compare_versions("demo-adder", "1.0.0", "1.1.0")
    assert (figures["agreement"], figures["mean_abs_diff"], figures["compared_numbers"]) == (None, 0.25, 2)


def test_a_full_mirror_drops_and_counts_and_a_failing_task_counts_as_failed():
    release, mirror = threading.Event(), Mirror(workers=1, size=2, idle=1.0)
    assert mirror.offer("m", lambda: release.wait(5.0))
    wait_for(mirror.tasks.empty, 5.0, "the worker taking the first task")  # and waiting in it
    assert mirror.offer("m", lambda: 1 / 0) and mirror.offer("m", lambda: True)
    assert not mirror.offer("m", lambda: True)  # two waiting: the bound
    release.set()
    wait_for(lambda: sum(mirror.counts_of("m").values()) == 4, 5.0, "the mirror running its tasks")
    assert mirror.counts_of("m") == {"copied": 2, "failed": 1, "dropped": 1}
    assert mirror.counts_of("other") == {"copied": 0, "failed": 0, "dropped": 0}


@pytest.mark.parametrize("share", [0, -0.1, 1.5, "half", None, True, float("nan")])
def test_a_share_outside_zero_to_one_is_refused_naming_it(share):
    with pytest.raises(Invalid, match=r"share .* is not in \(0, 1\]; give the fraction of calls to copy"):
        checked_share(share)
    assert checked_share(1) == 1.0 and checked_share("0.2") == 0.2


@pytest.mark.parametrize(
    ("body", "status", "error"),
    [
        ({"version": "9.9.9", "share": 0.5}, 404, "Model 'demo-adder' has no version or alias '9.9.9'"),
        ({"version": "1.0.0", "share": 1.5}, 400, "share 1.5 is not in (0, 1]"),
        ({"version": "1.1.0"}, 400, "demo-adder@1.1.0 is the version serving demo-adder's calls"),
        ({"version": "1.0.0"}, 409, "demo-adder@1.0.0 is not deployed. Run 'aid deploy demo-adder@1.0.0'"),
        ({"version": "1.0.0", "every": 2}, 400, "Unknown field(s) 'every'; the fields are version, share."),
        ({"share": 0.5}, 400, 'version None is not a version; give one such as "1.1.0".'),
    ],
)
def test_each_bad_shadow_request_has_its_status_and_says_what_to_do(two, client, body, status, error):
    reply = client.put(SHADOW, json=body)
    assert reply.status_code == status, reply.get_json()
    assert error in reply.get_json()["error"]


def test_without_a_shadow_status_says_none_and_stopping_is_not_found(two, client):
    assert client.get(SHADOW).get_json() == {"model": "demo-adder", "shadow": None}
    reply = client.delete(SHADOW)
    assert reply.status_code == 404
    assert reply.get_json()["error"] == (
        "demo-adder has no shadow version. Start one with 'aid shadow demo-adder VERSION'."
    )
    assert client.get("/api/v1/models/nothing/shadow").status_code == 404


@pytest.mark.parametrize(
    ("query", "status", "error"),
    [
        ("a=1.0.0", 400, "Name the two versions to compare: ?a=VERSION&b=VERSION (a='1.0.0', b='')."),
        ("a=1.0.0&b=1.0.0", 400, "demo-adder@1.0.0 is compared with itself; name two different versions."),
        ("a=1.0.0&b=3.0.0", 404, "Model 'demo-adder' has no version or alias '3.0.0'"),
        ("a=1.0.0&b=1.1.0&window=soon", 422, "window"),
    ],
)
def test_each_bad_compare_request_has_its_status(two, client, query, status, error):
    reply = client.get(f"/api/v1/models/demo-adder/compare?{query}")
    assert reply.status_code == status, reply.get_json()
    assert error in reply.get_json()["error"]


def test_compare_over_http_without_pairs_is_zero_pairs(two, client):
    reply = client.get("/api/v1/models/demo-adder/compare?a=1.0.0&b=1.1.0&window=7d")
    assert reply.status_code == 200
    figures = reply.get_json()
    assert (figures["pairs"], figures["agreement"], figures["window"]) == (0, None, "7d")
    assert [s["calls"] for s in figures["sides"]] == [0, 0]


def test_the_compare_page_shows_the_two_on_the_same_inputs(two, client):
    assert "On the same inputs" not in get(client, "/compare?a=demo-adder@1.0.0&b=demo-adder@1.1.0")
    first = log_pair(two, {"label": "cat", "p": [0.9]}, {"label": "cat", "p": [0.5]}, (2.0, 10.0))
    log_pair(two, {"label": "dog", "p": [0.6]}, {"label": "cat", "p": [0.6]}, (4.0, 30.0))
    two.predlog.flush()
    two.feedback(first, {"label": "cat"})
    text = text_of(get(client, "/compare?a=demo-adder@1.0.0&b=demo-adder@1.1.0&window=7d"))
    said = "On the same inputs 2 calls over the last 7d that one answered live and the other in shadow"
    assert said in text
    assert "Answered live / in shadow 2 / 0 0 / 2 Errors 0 0 Latency p50 3 ms 20 ms" in text
    assert "Accuracy on the calls with feedback 100.0% of 1 100.0% of 1" in text
    assert "Agreement (labels) 50.0% of 2 calls Mean absolute difference (numbers) 0.2 over 2 values" in text


def test_copies_beyond_the_queues_bytes_are_dropped():
    release, mirror = threading.Event(), Mirror(workers=1, size=10, idle=1.0, most_bytes=10)
    assert mirror.offer("m", lambda: release.wait(5.0), size=0)
    wait_for(mirror.tasks.empty, 5.0, "the worker taking the first task")
    assert mirror.offer("m", lambda: True, size=8)
    assert not mirror.offer("m", lambda: True, size=8)  # 16 bytes would wait: over 10
    release.set()
    wait_for(lambda: mirror.counts_of("m")["copied"] == 2, 5.0, "the mirror running its tasks")
    assert (mirror.counts_of("m")["dropped"], mirror.queued_bytes) == (1, 0)
    assert mirror.offer("m", lambda: True, size=8)  # room again
