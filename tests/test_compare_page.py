"""The compare page through the Flask test client: two versions side by side, the better figure
marked, the default partner, and the same input run through both (tests/test_api_contract.py runs
it against a served model)."""

from __future__ import annotations

import html
import re
from urllib.parse import unquote

from monitor.predlog import PredictionRecord
from tests.page_reading import Elements, get, text_of
from tests.test_pages import log_traffic


def better_cells(page: str) -> dict[str, int]:
    """Figure label -> which column (0 or 1) is marked better."""
    marked = {}
    for row in re.findall(r'(?s)<tr class="figure-[^"]+">(.*?)</tr>', page):
        label = text_of(re.search(r"(?s)<th[^>]*>(.*?)</th>", row)[1])
        cells = re.findall(r"(?s)<td([^>]*)>", row)
        for i, attrs in enumerate(cells):
            if 'class="better"' in attrs:
                marked[label] = i
    return marked


def test_two_versions_side_by_side_with_the_better_figures_marked(hub, client, publish):
    publish()
    publish(version="1.1.0")
    log_traffic(hub)  # 1.0.0: four recent calls, one failed; feedback one right, one wrong
    page = get(client, "/compare?a=demo-adder@1.0.0&b=demo-adder@1.1.0")
    text = text_of(page)
    assert "demo-adder@1.0.0 vs demo-adder@1.1.0" in text
    assert "Requests 4 0" in text
    assert "Error rate 25.0% —" in text
    assert "Accuracy 50.0% (better) —" not in text  # nothing to be better than: 1.1.0 has no feedback
    assert better_cells(page) == {}
    picked = re.findall(r"<option selected>([^<]+)</option>", page)
    assert picked == ["demo-adder@1.0.0", "demo-adder@1.1.0", "24h"]  # the pickers show what is shown


def test_a_better_figure_is_marked_when_both_sides_have_one(hub, client, publish):
    publish(name="first", task="regression")
    publish(name="second", task="regression")
    log_traffic(hub, "first")  # a quarter failed; judged right once, wrong once
    version_id = hub.catalog.resolve("second", "1.0.0").id
    record = PredictionRecord(version_id=version_id, model="second", version="1.0.0", latency_ms=2.0)
    ids = [hub.predlog.record(record) for _ in range(4)]
    hub.predlog.flush()
    for pid in ids:
        hub.feedback(pid, {"correct": True, "rating": 5})
    marks = better_cells(get(client, "/compare?a=first@1.0.0&b=second@1.0.0"))
    assert marks["Error rate"] == marks["Accuracy"] == marks["Accuracy, 95% lower bound"] == 1
    assert "Requests" not in marks and "Feedback" not in marks  # more is not better
    assert "Mean rating" not in marks  # the first has none to compare


def test_without_a_second_version_the_one_before_is_the_partner(client, publish):
    publish()
    publish(version="1.1.0")
    publish(version="1.2.0")
    assert "demo-adder@1.1.0 vs demo-adder@1.0.0" in text_of(get(client, "/compare?a=demo-adder@1.1.0"))
    assert "demo-adder@1.0.0 vs demo-adder@1.2.0" in text_of(get(client, "/compare?a=demo-adder@1.0.0"))


def test_a_lone_version_is_compared_with_the_best_of_its_task_or_told_there_is_none(client, publish):
    publish(name="alone", task="ranking")
    said = text_of(get(client, "/compare?a=alone@1.0.0", status=400))
    assert "alone@1.0.0 has nothing to be compared with" in said
    publish(name="rival", task="ranking")
    assert "alone@1.0.0 vs rival@1.0.0" in text_of(get(client, "/compare?a=alone"))


def test_the_same_input_through_two_versions_that_do_not_serve_says_so_for_each(client, publish):
    publish()
    publish(version="1.1.0")
    shown = get(client, "/compare?a=demo-adder@1.0.0&b=demo-adder@1.1.0")
    example = html.unescape(re.search(r'(?s)<textarea id="compare-inputs"[^>]*>(.*?)</textarea>', shown)[1])
    form = {"a": "demo-adder@1.0.0", "b": "demo-adder@1.1.0", "inputs": example, "window": "24h"}
    page = client.post("/compare", data=form).get_data(as_text=True)
    answers = re.findall(r'(?s)<div class="compare-answer" id="answer-\d">(.*?)</div>', page)
    assert len(answers) == 2 and all("is not deployed" in text_of(a) for a in answers), answers
    bad = client.post("/compare", data=form | {"inputs": "{not json"}).get_data(as_text=True)
    assert text_of(bad).count("The inputs are not JSON") == 2
    wrong = client.post("/compare", data=form | {"inputs": '{"nope": 1}'}).get_data(as_text=True)
    assert text_of(wrong).count("nope") >= 2  # each side names the input it does not know


def test_model_page_and_leaderboard_link_to_the_compare_view(client, publish):
    publish()
    publish(version="1.1.0")
    model = Elements(get(client, "/models/demo-adder"))
    assert [a for a in model.find("a") if unquote(a.get("href", "")) == "/compare?a=demo-adder@1.1.0"]
    board = Elements(get(client, "/tasks/regression"))
    assert [a for a in board.find("a") if a.get("href", "").startswith("/compare?a=demo-adder")]
