"""The review queue on SQLite and PostgreSQL, without model servers: which logged calls the selection
pass chooses and why (low confidence by each measure, disagreement with a shadow, drifted inputs), its
caps (per version per minute, waiting items) and that it never chooses a call twice; then the API and
the page as a reviewer meets them: a label becomes feedback, a label the model lacks is a 422.
(tests/test_browser_review.py clicks through the page in Chromium; tests/test_review_cli.py runs `aid
review`.)"""

from __future__ import annotations

import re
from datetime import UTC, timedelta

import pytest

from hub import reviewselect
from monitor import driftruns, reviews
from monitor.predlog import PredictionRecord, new_prediction_id
from monitor.reviews import ReviewCursor, ReviewItem
from monitor.shadows import shadow_id
from monitor.tables import Feedback
from tests.page_reading import get, text_of
from vocab.states import DriftRunStatus
from vocab.times import utcnow

LABELS = ["cat", "dog", "fox"]
SCHEMA = {
    "inputs": {"x": {"dtype": "float32", "shape": [-1, 2]}},
    "outputs": {
        "label": {"dtype": "int64", "shape": [-1]},
        "probabilities": {"dtype": "float32", "shape": [-1, 3]},
    },
}
API = "/api/v1/models/sorter/review"


@pytest.fixture
def sorter(hub, publish):
    """`sorter` 1.0.0 and 1.1.0: python models answering a label index and three probabilities."""
    for version in ("1.0.0", "1.1.0"):
        publish(name="sorter", version=version, framework="python", artifact=None,
                entrypoint="predict.py:Model", labels=LABELS, examples=[], **SCHEMA)  # fmt: skip
    return hub


def call(hub, probs, x=(0.5, 0.5), version="1.0.0", minutes_ago=5, seconds=0, **fields) -> str:
    """Log a call of sorter@version that answered `probs` (its label: the most probable)."""
    row = hub.catalog.resolve("sorter", version)
    label = max(range(len(probs)), key=probs.__getitem__)
    at = utcnow().replace(second=0, microsecond=0) - timedelta(minutes=minutes_ago, seconds=-seconds)
    fields.setdefault("id", new_prediction_id(at.replace(tzinfo=UTC).timestamp()))  # ids sort by time
    record = PredictionRecord(
        row.id, "sorter", version, 2.0, inputs={"x": [list(x)]},
        outputs={"label": [label], "probabilities": [list(probs)]}, created_at=at, **fields,
    )  # fmt: skip
    return hub.predlog.record(record)


def chosen(hub) -> dict[str, ReviewItem]:
    hub.predlog.flush()
    hub.select_for_review()
    return {item.prediction_id: item for item in ReviewItem.select()}


def test_low_confidence_by_margin_chooses_only_the_doubtful_answers(sorter):
    sure = call(sorter, [0.9, 0.05, 0.05])
    close = call(sorter, [0.45, 0.40, 0.15])
    edge = call(sorter, [0.5, 0.3, 0.2])  # a margin of 0.2 exactly: not below the threshold
    items = chosen(sorter)
    assert set(items) == {close}
    item = items[close]
    assert (item.reason, item.score, item.detail, item.answer) == (
        "low_confidence",
        0.95,
        "margin 0.05",
        "cat",
    )
    assert (item.version, item.state, item.model) == ("1.0.0", "waiting", "sorter")
    assert sure not in items and edge not in items


@pytest.mark.parametrize(
    "measure, threshold, picked",
    [
        ("max_probability", 0.5, {"flat", "close"}),
        ("entropy", 0.95, {"flat"}),
        ("margin", 0.3, {"flat", "close", "edge"}),
    ],
)
def test_each_confidence_measure_with_its_threshold(sorter, measure, threshold, picked):
    sorter.set_review_rules("sorter", {"measure": measure, "threshold": threshold})
    ids = {
        "flat": call(sorter, [0.34, 0.33, 0.33]),
        "close": call(sorter, [0.45, 0.40, 0.15]),
        "edge": call(sorter, [0.6, 0.35, 0.05]),
        "sure": call(sorter, [0.98, 0.01, 0.01]),
    }
    items = chosen(sorter)
    assert {name for name, pid in ids.items() if pid in items} == picked


def test_logits_are_read_as_probabilities_through_a_softmax(sorter):
    pid = call(sorter, [2.0, 1.9, -3.0])  # softmax: 0.52, 0.47, 0.003
    item = chosen(sorter)[pid]
    assert item.detail == "margin 0.05" and item.answer == "cat"


def test_a_shadow_that_answers_another_label_is_a_disagreement(sorter):
    differ = call(sorter, [0.9, 0.05, 0.05])
    agree = call(sorter, [0.9, 0.05, 0.05])
    for live, probs in ((differ, [0.1, 0.8, 0.1]), (agree, [0.7, 0.2, 0.1])):
        call(sorter, probs, version="1.1.0", source="shadow", id=shadow_id(live))
    items = chosen(sorter)
    assert set(items) == {differ}  # and never a shadow's own row
    assert (items[differ].reason, items[differ].score) == ("disagreement", 1.0)
    assert items[differ].detail == "1.1.0 (shadow) answered dog"


def test_an_input_outside_the_reference_range_of_a_drifted_column_is_chosen(sorter):
    sorter.review_selector.reference_rows = 5  # AIDHUB_DRIFT_REFERENCE_ROWS, as drift runs use it
    for i in range(5):  # the first calls: the reference, as the version has no reference data
        call(sorter, [0.9, 0.05, 0.05], x=(i / 4, 10.0), minutes_ago=30)
    sorter.predlog.flush()
    version = sorter.catalog.resolve("sorter", "1.0.0")
    columns = [{"column": "x.0", "drifted": True}, {"column": "x.1", "drifted": False}]
    now = utcnow()
    driftruns.record_run(version.id, (now - timedelta(hours=1), now), "first predictions",
                         status=DriftRunStatus.DONE, share=0.5, drifted=True,
                         result={"inputs": {"columns": columns}})  # fmt: skip
    far = call(sorter, [0.9, 0.05, 0.05], x=(3.0, 10.0))
    inside = call(sorter, [0.9, 0.05, 0.05], x=(0.5, 99.0))  # x.1 did not drift: not a reason
    items = chosen(sorter)
    assert far in items and inside not in items
    assert (items[far].reason, items[far].score) == ("drift", 1.0)
    assert items[far].detail == "x.0 = 3, outside the reference's 0 to 1"


def test_a_busy_minute_gives_at_most_per_minute_items_the_most_doubtful(sorter):
    margins = [i / 100 for i in range(20)]  # 0.00 .. 0.19, all below the default 0.2
    ids = [call(sorter, [0.5 + m / 2, 0.5 - m / 2, 0.0], seconds=i) for i, m in enumerate(margins)]
    later = call(sorter, [0.5, 0.49, 0.01], minutes_ago=3)
    items = chosen(sorter)
    assert set(items) == {*ids[:5], later}  # 5 from the busy minute (the default), the later one too
    assert sorted(items[i].detail for i in ids[:5]) == [f"margin {m:.2f}" for m in margins[:5]]


def test_no_new_items_while_max_waiting_wait_and_a_call_is_never_chosen_twice(sorter):
    sorter.set_review_rules("sorter", {"max_waiting": 3, "per_minute": 100})
    for i in range(6):
        call(sorter, [0.4, 0.35, 0.25], seconds=i)
    assert len(chosen(sorter)) == 3
    ReviewItem.update(state="skipped").execute()  # none waits now: room again
    ReviewCursor.delete().execute()  # the pass judges the same calls once more
    items = chosen(sorter)
    assert len(items) == 6 and len(set(items)) == 6  # three new ones, none of the first three again


def test_calls_of_several_items_and_models_without_labels_are_not_chosen(sorter, publish):
    publish()  # demo-adder: no labels
    doubtful = {"label": [0, 1], "probabilities": [[0.4, 0.35, 0.25], [0.4, 0.35, 0.25]]}
    for name, outputs in (("sorter", doubtful), ("demo-adder", {"y": [[0.4, 0.6]]})):
        row = sorter.catalog.resolve(name, "1.0.0")
        at = utcnow() - timedelta(minutes=5)
        inputs = {"x": [[1, 2], [3, 4]] if name == "sorter" else [[1, 2]]}
        sorter.predlog.record(
            PredictionRecord(row.id, name, "1.0.0", 1.0, inputs=inputs, outputs=outputs, created_at=at)
        )
    assert chosen(sorter) == {}


def test_the_first_pass_looks_back_an_hour_and_failed_calls_do_not_hold_the_cursor(sorter):
    old = call(sorter, [0.45, 0.40, 0.15], minutes_ago=90)
    failed = call(sorter, [0.45, 0.40, 0.15], status="error", error="boom")
    recent = call(sorter, [0.45, 0.40, 0.15], minutes_ago=2)
    assert set(chosen(sorter)) == {recent}
    assert reviews.cursor() > max(old, failed, recent)  # the next scan starts after all of them
    assert reviews.cursor() < new_prediction_id()  # and not after calls of the last few seconds


def test_a_pass_reads_page_by_page_up_to_its_batch_and_the_next_goes_on_from_there(sorter, monkeypatch):
    monkeypatch.setattr(reviewselect, "PAGE", 3)
    monkeypatch.setattr(reviewselect, "BATCH", 7)
    doubtful = [call(sorter, [0.45, 0.40, 0.15], minutes_ago=20 - i) for i in range(10)]  # a minute each
    assert set(chosen(sorter)) == set(doubtful[:7])  # three pages: 3 + 3 + 1
    assert reviews.cursor() == doubtful[6]
    assert set(chosen(sorter)) == set(doubtful)
    assert reviews.cursor() > doubtful[9]


def test_bad_rules_are_refused_naming_the_value(sorter, client):
    reply = client.put(API + "/rules", json={"measure": "variance"})
    assert reply.status_code == 400
    assert reply.get_json()["error"] == "measure 'variance' is not one of max_probability, margin, entropy."
    reply = client.put(API + "/rules", json={"threshold": 2})
    assert reply.get_json()["error"] == "threshold 2 is not in [0, 1]; e.g. 0.2 for a margin."
    reply = client.put(API + "/rules", json={"measure": "entropy"})
    assert reply.status_code == 200 and reply.get_json()["rules"]["threshold"] == 0.8  # entropy's default


def queued(hub) -> ReviewItem:
    pid = call(hub, [0.45, 0.40, 0.15], x=(1.5, 2.5))
    return chosen(hub)[pid]


def test_the_api_lists_waiting_items_with_input_and_answer(sorter, client):
    item = queued(sorter)
    data = client.get(API).get_json()
    assert data["labels"] == LABELS and data["counts"] == {"waiting": 1, "labelled": 0, "skipped": 0}
    (found,) = data["items"]
    assert (found["id"], found["reason"], found["answer"], found["detail"]) == (
        item.id,
        "low_confidence",
        "cat",
        "margin 0.05",
    )
    assert found["inputs"] == {"x": [[1.5, 2.5]]} and found["outputs"]["label"] == [0]
    assert found["top"] == [
        {"label": "cat", "probability": 0.45}, {"label": "dog", "probability": 0.4},
        {"label": "fox", "probability": 0.15},
    ]  # fmt: skip


def test_a_label_becomes_feedback_on_the_prediction(sorter, client):
    item = queued(sorter)
    reply = client.post(f"{API}/{item.id}", json={"label": "dog"})
    assert reply.status_code == 200, reply.get_json()
    assert reply.get_json()["feedback"]["correct"] is False
    (feedback,) = Feedback.select()
    assert (feedback.prediction_id, feedback.label, feedback.correct) == (item.prediction_id, "dog", False)
    assert client.get(API).get_json()["items"] == []
    labelled = client.get(f"{API}/{item.id}").get_json()
    assert (labelled["state"], labelled["label"], labelled["reviewer"]) == ("labelled", "dog", "admin")
    assert sorter.scorecard("sorter", "1.0.0")["feedback"]["incorrect"] == 1


def test_a_label_not_in_the_models_labels_is_422_naming_both(sorter, client):
    item = queued(sorter)
    reply = client.post(f"{API}/{item.id}", json={"label": "wolf"})
    assert reply.status_code == 422
    assert reply.get_json()["error"] == "label: 'wolf' is not one of sorter's labels: cat, dog, fox."
    assert Feedback.select().count() == 0 and ReviewItem.get_by_id(item.id).state == "waiting"


def test_skip_unknown_items_and_bad_bodies(sorter, client):
    item = queued(sorter)
    assert client.post(f"{API}/{item.id}", json={"skip": True}).get_json()["item"]["state"] == "skipped"
    again = client.post(f"{API}/{item.id}", json={"skip": True})
    assert again.status_code == 409 and "skipped already" in again.get_json()["error"]
    missing = client.post(f"{API}/999", json={"label": "cat"})
    assert missing.status_code == 404
    assert (
        missing.get_json()["error"]
        == "sorter has no review item 999. 'aid review sorter' lists the waiting ones."
    )
    both = client.post(f"{API}/{item.id}", json={"label": "cat", "skip": True})
    assert both.status_code == 400 and both.get_json()["error"].startswith('Send {"label"')
    assert client.get("/api/v1/models/nobody/review").status_code == 404


def test_anonymous_callers_are_refused_when_the_hub_requires_a_token(open_hub, tmp_path, database_url):
    from web.app import create_app

    hub = open_hub(tmp_path / "home", database_url, anonymous_scopes=())
    try:
        reply = create_app(hub=hub).test_client().post(f"{API}/1", json={"label": "cat"})
        assert reply.status_code == 401 and "'feedback' scope" in reply.get_json()["error"]
    finally:
        hub.close()


def test_the_page_shows_one_item_and_its_forms_label_it_with_the_csrf_token(sorter, app):
    item = queued(sorter)
    browser = app.test_client()  # anonymous, as a visitor; this hub lets anonymous callers give feedback
    page = get(browser, "/models/sorter/review")
    text = text_of(page)
    assert f"Item {item.id} low confidence" in text and "margin 0.05" in text
    assert "x.0 1.5 x.1 2.5" in text and "Answer cat Most probable: cat 45.0% · dog 40.0% · fox 15.0%" in text
    assert re.findall(r'data-key="(\w)"', page) == ["1", "2", "3", "s"]
    assert (
        browser.post(f"/models/sorter/review/{item.id}", data={"label": "fox"}).status_code == 400
    )  # no token
    token = re.search(r'name="csrf_token" value="([^"]+)"', page).group(1)
    wrong = browser.post(f"/models/sorter/review/{item.id}", data={"label": "wolf", "csrf_token": token})
    assert wrong.status_code == 422 and "&#39;wolf&#39; is not one of sorter&#39;s labels" in wrong.get_data(
        as_text=True
    )
    done = browser.post(f"/models/sorter/review/{item.id}", data={"label": "fox", "csrf_token": token})
    assert done.status_code == 303
    assert "Nothing is waiting" in text_of(get(browser, done.headers["Location"]))
    assert Feedback.get().label == "fox"


def test_the_model_page_links_to_its_review_queue(sorter, client):
    assert 'href="/models/sorter/review"' in get(client, "/models/sorter")
