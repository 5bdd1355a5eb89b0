"""`aid review` as a user meets it: a real hub (`aid serve`, SQLite) whose own selection pass queues a
doubtful logged call, then real `aid` processes that list, label and skip, with their exact text and
exit codes (2 for bad input: a label the model lacks; 1 for what is not there)."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta

import pytest
from peewee import SqliteDatabase

from monitor.predlog import new_prediction_id
from monitor.tables import Feedback, Prediction
from tests.hubserver import HubProcess, wait_for
from tests.packages import onnx_package

AT = (datetime.now(UTC) - timedelta(minutes=2)).replace(microsecond=0, tzinfo=None)


def log_call(server: HubProcess, scores: list[float], seconds: int = 0) -> str:
    at = AT + timedelta(seconds=seconds)
    pid = new_prediction_id(at.replace(tzinfo=UTC).timestamp())
    with SqliteDatabase(str(server.home / "hub.db")).bind_ctx([Prediction]):
        Prediction.create(id=pid, version_id=1, model="doubler", version="1.0.0", latency_ms=1.0,
                          created_at=at, status="ok", source="hub",
                          inputs='{"x": [[1.0, 2.0]]}', outputs=json.dumps({"y": [scores]}))  # fmt: skip
    return pid


@pytest.fixture(scope="module")
def hub(tmp_path_factory):
    """doubler (y: two scores, labels small and large) with two doubtful calls and a sure one, queued
    by the hub's own selection pass (every 30 s, for calls 20 s old)."""
    root = tmp_path_factory.mktemp("review")
    server = HubProcess(root / "home").start()
    published = server.aid("publish", str(onnx_package(root / "doubler", labels=["small", "large"])))
    assert published.returncode == 0, published.stdout + published.stderr
    server.calls = [
        log_call(server, scores, i) for i, scores in enumerate(([0.55, 0.45], [0.95, 0.05], [0.48, 0.52]))
    ]
    wait_for(lambda: "2 waiting" in server.aid("review", "doubler").stdout, 60, "the selection pass", every=1)
    yield server
    server.stop()


def test_aid_review_lists_the_waiting_items_most_doubtful_first(hub):
    done = hub.aid("review", "doubler")
    assert done.returncode == 0, done.stderr
    lines = done.stdout.splitlines()
    assert lines[0] == (
        "doubler: 2 waiting, 0 labelled, 0 skipped. Chosen by margin (threshold 0.2), disagreement and "
        "drift; at most 5 a minute per version, 500 waiting."
    )
    assert lines[1].split() == ["ID", "VERSION", "REASON", "SCORE", "ANSWER", "WHY"]
    assert lines[3].split() == ["1", "1.0.0", "low_confidence", "0.96", "large", "margin", "0.04"]
    assert lines[4].split() == ["2", "1.0.0", "low_confidence", "0.90", "small", "margin", "0.10"]
    assert (
        lines[5] == f"Label them at {hub.url}/models/doubler/review, or: aid review doubler --label ID LABEL"
    )
    items = json.loads(hub.aid("review", "doubler", "--json").stdout)["items"]
    doubtful, _sure, more_doubtful = hub.calls
    assert [i["prediction_id"] for i in items] == [more_doubtful, doubtful]  # never the sure one
    assert items[1]["inputs"] == {"x": [[1.0, 2.0]]} and items[1]["outputs"] == {"y": [[0.55, 0.45]]}


def test_a_label_the_model_lacks_exits_2_naming_its_labels(hub):
    done = hub.aid("review", "doubler", "--label", "1", "medium")
    assert done.returncode == 2
    assert done.stderr == "Error: label: 'medium' is not one of doubler's labels: small, large.\n"


def test_aid_review_label_becomes_feedback_and_skip_and_unknown_items(hub):
    done = hub.aid("review", "doubler", "--label", "2", "large")
    assert done.returncode == 0, done.stderr
    assert done.stdout == "Labelled item 2 large: the model answered small (feedback 1).\n"
    with SqliteDatabase(str(hub.home / "hub.db")).bind_ctx([Feedback]):
        (feedback,) = Feedback.select()
    assert (feedback.prediction_id, feedback.label, feedback.correct) == (hub.calls[0], "large", False)
    assert hub.aid("review", "doubler", "--skip", "1").stdout == "Skipped item 1.\n"
    missing = hub.aid("review", "doubler", "--skip", "9")
    assert missing.returncode == 1
    assert (
        missing.stderr
        == "Error: doubler has no review item 9. 'aid review doubler' lists the waiting ones.\n"
    )
    listed = hub.aid("review", "doubler").stdout
    assert "0 waiting, 1 labelled, 1 skipped" in listed and "Nothing is waiting." in listed


def test_aid_review_sets_the_rules(hub):
    done = hub.aid("review", "doubler", "--measure", "entropy", "--max-waiting", "50")
    assert done.returncode == 0, done.stderr
    said = "Chosen by entropy (threshold 0.8), disagreement and drift; at most 5 a minute per version, 50"
    assert said + " waiting." in done.stdout
    bad = hub.aid("review", "doubler", "--threshold", "1.5")
    assert (
        bad.returncode == 2
        and bad.stderr == "Error: threshold 1.5 is not in [0, 1]; e.g. 0.2 for a margin.\n"
    )
