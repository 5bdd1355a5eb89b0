"""The HTML pages, on a real Hub per test (SQLite file, then PostgreSQL) with packages published through
hub.publish (conftest.py: hub, client, publish).

Nothing is deployed here (tests/test_api_contract.py serves a model), so the pages show
published-not-deployed models. tests/test_pages_in_browser.py drives the pages in a real Chromium.
"""

from __future__ import annotations

import re

from monitor.predlog import PredictionRecord
from tests.demo_package import demo_build
from tests.page_reading import Elements, get, text_of
from vocab.states import BuildStatus
from web import charts
from web.markdown import render_card, sanitise

# --- catalog ----------------------------------------------------------------------------------


def test_catalog_shows_a_card_per_model_with_task_tags_versions_and_state(client, publish):
    publish()
    publish(name="other-model", task="text-classification", tags=["nlp"], summary="Something else")
    text = text_of(get(client, "/"))
    assert "2 models" in text
    assert "demo-adder regression Adds one to each value onnx tiny latest 1.0.0 · not deployed" in text
    assert "other-model text-classification Something else nlp latest 1.0.0 · not deployed" in text


def test_catalog_search_and_task_and_tag_filters(client, publish):
    publish()
    publish(name="other-model", task="text-classification", tags=["nlp"], summary="Something else")
    assert "1 model" in text_of(get(client, "/?q=adds"))
    assert "other-model" not in text_of(get(client, "/?q=adds"))
    assert "demo-adder" not in text_of(get(client, "/?task=text-classification"))
    tagged = text_of(get(client, "/?tag=tiny"))
    assert "Tagged tiny" in tagged and "demo-adder" in tagged and "other-model" not in tagged
    assert "No model matches these filters." in text_of(get(client, "/?q=nothing-like-this"))


def test_catalog_with_no_models_says_how_to_publish(client):
    assert "No model is published yet. Publish one with aid publish ./my-model ." in text_of(get(client, "/"))


# --- model page -------------------------------------------------------------------------------


def test_model_page_shows_name_task_versions_and_not_deployed(client, publish):
    publish()
    publish(version="1.1.0")
    page = get(client, "/models/demo-adder")
    text = text_of(page)
    assert "regression · leaderboard demo-adder Adds one to each value onnx tiny" in text
    assert "onnx · not deployed" in text
    assert "Version 1.1.0 is not deployed: predictions fail until it is deployed" in text
    rows = re.findall(r"(1\.[01]\.0) ([0-9a-f]{12}) (\S+ \S+ UTC) (latest|—) not deployed", text)
    assert [(r[0], r[3]) for r in rows] == [("1.1.0", "latest"), ("1.0.0", "—")]
    assert "Aliases latest 1.1.0" in text


def test_model_page_version_query_selects_the_version(client, publish):
    publish()
    publish(version="1.1.0")
    page = get(client, "/models/demo-adder?version=1.0.0")
    assert [o["value"] for o in Elements(page).find("option") if "selected" in o] == ["1.0.0"]
    assert "Scorecard 1.0.0" in text_of(page)
    assert "/api/v1/models/demo-adder/predict?version=1.0.0" in page
    assert 'data-url="/api/v1/models/demo-adder/predict?version=1.0.0"' in page


def test_model_page_scorecard_is_zero_before_any_traffic(client, publish):
    publish()
    text = text_of(get(client, "/models/demo-adder"))
    assert (
        "Requests 0 Error rate — 0 errors Latency p50 — p95 — p99 — Feedback 0 0 right, 0 wrong "
        "Accuracy — no judged predictions Mean rating — of 5, 0 ratings"
    ) in text
    assert "No requests yet for this version." in text


def test_try_it_form_has_a_textarea_per_input_prefilled_with_the_first_example(client, publish):
    publish(examples=[{"inputs": {"x": [[1.0, 2.0]]}}, {"inputs": {"x": [[9.0, 9.0]]}}])
    page = get(client, "/models/demo-adder")
    form = Elements(page)
    assert form.find("form", id="try-it")[0]["data-url"] == "/api/v1/models/demo-adder/predict?version=1.0.0"
    assert [a["name"] for a in form.find("textarea", **{"data-input": "x"})] == ["x"]
    assert re.search(r'<textarea name="x"[^>]*>\[\[1\.0, 2\.0\]\]</textarea>', page)
    assert "x float32, shape n × 2" in text_of(page)


def test_try_it_falls_back_to_a_placeholder_from_the_schema(client, publish):
    publish(examples=[])
    assert re.search(
        r'<textarea name="x"[^>]*>\[\[0\.0, 0\.0\]\]</textarea>', get(client, "/models/demo-adder")
    )


def test_curl_snippets_post_the_first_example_to_the_predict_and_v2_apis(client, publish):
    publish()
    text = text_of(get(client, "/models/demo-adder"))
    assert (
        "curl -X POST http://localhost/api/v1/models/demo-adder/predict \\ "
        "-H 'Content-Type: application/json' \\ "
        """-d '{"inputs": {"x": [[1.0, 2.0]]}}'"""
    ) in text
    assert (
        "curl -X POST http://localhost/v2/models/demo-adder/infer \\ "
        "-H 'Content-Type: application/json' \\ "
        """-d '{"inputs": [{"name": "x", "shape": [1, 2], "datatype": "FP32", "data": [1.0, 2.0]}]}'"""
    ) in text


def test_feedback_form_posts_records_and_redirects_with_a_confirmation(client, hub, publish):
    publish(labels=["small", "large"])
    form = {"version": "1.0.0", "correct": "yes", "label": "large", "rating": "4", "comment": "fine"}
    reply = client.post("/models/demo-adder/feedback", data=form)
    assert reply.status_code == 303
    assert reply.headers["Location"] == "/models/demo-adder?version=1.0.0&feedback=1#feedback"
    feedback = hub.scorecard("demo-adder", "1.0.0")["feedback"]
    # feedback on a model generally is kept and rated, but only feedback on predictions judges accuracy
    judged = (feedback["count"], feedback["correct"], feedback["accuracy"], feedback["mean_rating"])
    assert judged == (1, 0, None, 4.0)
    text = text_of(get(client, "/models/demo-adder?version=1.0.0&feedback=1"))
    assert "Thank you: feedback #1 was recorded." in text
    assert (
        "Feedback 1 0 right, 0 wrong Accuracy — no judged predictions Mean rating 4.00 of 5, 1 ratings"
        in text
    )


def test_feedback_form_offers_the_versions_labels(client, publish):
    publish(labels=["small", "large"])
    options = Elements(get(client, "/models/demo-adder")).find("option")
    assert [o["value"] for o in options if o["value"] in ("", "small", "large")] == ["", "small", "large"]


def test_feedback_form_with_nothing_filled_in_shows_the_problem(client, hub, publish):
    publish()
    reply = client.post("/models/demo-adder/feedback", data={"version": "1.0.0", "comment": "  "})
    assert reply.status_code == 400
    text = text_of(reply.get_data(as_text=True))
    assert "feedback: give at least one of correct, label, rating, comment." in text
    assert hub.scorecard("demo-adder", "1.0.0")["feedback"]["count"] == 0


def test_model_card_is_rendered_and_sanitised(client, publish):
    publish()
    page = get(client, "/models/demo-adder")
    card = page.split('<section id="card"', 1)[1].split("</section>", 1)[0]
    elements = Elements(card)
    assert [t for t, _ in elements.tags if t in ("script", "img")] == []
    assert not any(k.startswith("on") for _, attrs in elements.tags for k in attrs)
    assert not any("javascript:" in (a.get("href") or "") for a in elements.find("a"))
    assert elements.find("a", href="https://example.org/docs")
    assert "<h1>Demo adder</h1>" in card
    text = text_of(card)
    assert "Adds one to every value. Trained on nothing at all." in text
    assert "<script>alert('card')</script>" in text  # shown as text, inert


def test_sanitiser_removes_raw_html_attacks_even_without_markdown():
    cleaned = sanitise('<p onclick="x()">hi<script>alert(1)</script><img src=x onerror=alert(2)></p>')
    assert cleaned == '<p>hi<img src="x"></p>'
    assert sanitise('<a href="javascript:alert(1)">go</a>') == '<a rel="noopener noreferrer nofollow">go</a>'
    assert render_card("[x](javascript:alert(1))") == "<p>[x](javascript:alert(1))</p>\n"


def test_hostile_values_from_a_package_are_escaped(client, publish, tmp_path):
    hostile = "</textarea><script>alert('x')</script>"
    publish(
        name="echo", framework="python", artifact=None, entrypoint="predict.py:Model",
        summary="<img src=x onerror=alert(1)>", inputs={"text": {"dtype": "string", "shape": [-1]}},
        examples=[{"inputs": {"text": [hostile]}}],
    )  # fmt: skip
    for page in (get(client, "/"), get(client, "/models/echo")):
        assert "<script>alert" not in page and "<img src=x" not in page
    page = get(client, "/models/echo")
    assert "&lt;/textarea&gt;&lt;script&gt;alert(&#39;x&#39;)&lt;/script&gt;" in page
    assert """-d '{"inputs": {"text": ["</textarea><script>alert('"'"'x'"'"')</script>"]}}'""" in text_of(
        page
    )


def test_pages_send_a_content_security_policy(client, publish):
    publish()
    csp = client.get("/models/demo-adder").headers["Content-Security-Policy"]
    assert "script-src 'self'" in csp and "object-src 'none'" in csp


# --- errors and builds ------------------------------------------------------------------------


def test_unknown_model_is_a_404_page_listing_the_models(client, publish):
    publish()
    page = get(client, "/models/nope", status=404)
    assert "<title>Error 404 · aidhub</title>" in page
    assert "Error 404 Model 'nope' does not exist. Models: demo-adder. Back to all models" in text_of(page)


def test_unknown_version_is_a_404_page_naming_the_versions(client, publish):
    publish()
    text = text_of(get(client, "/models/demo-adder?version=9.0.0", status=404))
    assert "Model 'demo-adder' has no version or alias '9.0.0'. Versions: 1.0.0. Aliases: latest." in text


def test_unknown_page_uses_the_same_layout(client):
    page = get(client, "/no/such/page", status=404)
    assert 'href="/static/hub.css"' in page and "Error 404" in text_of(page)


def test_build_page_shows_status_and_log_and_follows_a_running_build(client, publish):
    publish()
    build_id = demo_build(BuildStatus.RUNNING, "installing <numpy>\n")
    page = get(client, f"/builds/{build_id}")
    assert f'data-build-poll="/api/v1/builds/{build_id}"' in page
    assert """data-build-in-flight='["cancelling", "queued", "running"]'""" in page
    assert '<pre class="log" id="build-log">installing &lt;numpy&gt;\n</pre>' in page
    text = text_of(page)
    assert f"demo-adder@1.0.0 Build {build_id} running" in text
    assert "This page follows the build until it ends." in text


def test_finished_build_page_does_not_poll(client, publish):
    publish()
    build_id = demo_build(BuildStatus.FAILED, "error: no wheel for torch\n")
    page = get(client, f"/builds/{build_id}")
    assert "data-build-poll" not in page and "error: no wheel for torch" in page
    assert "Cancel build" not in text_of(page)


def test_cancel_button_ends_a_queued_build_and_shows_its_page(client, publish):
    publish()
    build_id = demo_build(BuildStatus.QUEUED, "")
    reply = client.post(f"/builds/{build_id}/cancel")
    assert (reply.status_code, reply.headers["Location"]) == (303, f"/builds/{build_id}")
    text = text_of(get(client, f"/builds/{build_id}"))
    assert f"demo-adder@1.0.0 Build {build_id} cancelled" in text
    assert "This page follows the build" not in text


def test_cancelling_a_build_that_ended_is_a_409_page_that_says_so(client, publish):
    publish()
    build_id = demo_build(BuildStatus.SUCCEEDED, "")
    reply = client.post(f"/builds/{build_id}/cancel")
    assert reply.status_code == 409
    assert f"Build {build_id} already succeeded; there is nothing to cancel." in text_of(reply.get_data(True))


def test_unknown_build_is_a_404_page(client):
    text = text_of(get(client, "/builds/999", status=404))
    assert "Build 999 does not exist. 'aid show MODEL' lists a version's builds." in text


def test_requests_chart_scales_bars_to_the_busiest_minute():
    series = [
        {"minute": "2024-05-01T12:00:00Z", "requests": 10, "errors": 5, "p95": 3.0},
        {"minute": "2024-05-01T12:02:00Z", "requests": 20, "errors": 0, "p95": 3.0},
    ]
    chart = charts.requests_chart(series)
    assert (chart["peak"], chart["start"], chart["end"]) == (20, "11:03", "12:02 UTC")
    first, last = chart["bars"]
    assert (first["h"], first["err_h"], last["h"]) == (60.0, 30.0, 120.0)
    assert last["x"] == 591.0 and first["label"] == "12:00 UTC: 10 requests, 5 errors"
    assert charts.requests_chart([{"minute": "2024-05-01T12:00:00Z", "requests": 0, "errors": 0}]) is None


def test_leaderboard_ranks_versions_by_the_wilson_lower_bound(hub, client, publish):
    publish(name="alpha")
    publish(name="beta")
    for name, verdicts in [("alpha", [True] * 3), ("beta", [True] * 18 + [False] * 2)]:
        # alpha: 3/3, little evidence; beta: 18/20, more evidence, a higher lower bound
        version_id = hub.catalog.resolve(name, "1.0.0").id
        for correct in verdicts:
            record = PredictionRecord(version_id=version_id, model=name, version="1.0.0", latency_ms=2.0)
            hub.predlog.record(record)
            hub.feedback(record.id, {"correct": correct})
    board = hub.leaderboard("Regression")
    assert [(r["rank"], r["model"], r["accuracy"]) for r in board["versions"]] == [
        (1, "beta", 0.9),
        (2, "alpha", 1.0),
    ]
    page = get(client, "/tasks/regression")
    assert page.index("beta@1.0.0") < page.index("alpha@1.0.0")
    assert "<td>90.0%</td>" in page and "<td>69.9% – 97.2%</td>" in page
