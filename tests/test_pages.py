"""The HTML pages, on a real Hub per test (SQLite file, then PostgreSQL) with packages published through
hub.publish (conftest.py: hub, client, publish).

Nothing is deployed here (tests/test_api_contract.py serves a model), so the pages show
published-not-deployed models. tests/test_pages_in_browser.py drives the pages in a real Chromium.
"""

from __future__ import annotations

import re
from datetime import timedelta

from monitor import driftruns
from monitor.predlog import PredictionRecord
from tests.demo_package import demo_build
from tests.page_reading import Elements, get, text_of
from vocab.states import BuildStatus, DriftRunStatus
from vocab.times import utcnow
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
    assert "regression · leaderboard · compare demo-adder Adds one to each value onnx tiny" in text
    assert "onnx · not deployed" in text
    assert "Version 1.1.0 is not deployed: predictions fail until it is deployed" in text
    rows = re.findall(
        r"(1\.[01]\.0) ([0-9a-f]{12}) [\d.]+ \S*Bytes (\S+ \S+ UTC) (latest|—) not deployed", text
    )
    assert [(r[0], r[3]) for r in rows] == [("1.1.0", "latest"), ("1.0.0", "—")]
    assert "Aliases latest 1.1.0" in text


def test_model_page_lists_the_files_with_sizes_and_download_links(client, publish):
    publish()
    page = get(client, "/models/demo-adder")
    assert "Files of 1.0.0 Download all with aid pull demo-adder@1.0.0 , or one by one:" in text_of(page)
    links = {a["href"] for a in Elements(page.split('<section id="files">')[1]).find("a") if "download" in a}
    assert "/api/v1/models/demo-adder/versions/1.0.0/files/model.onnx" in links
    reply = client.get("/api/v1/models/demo-adder/versions/1.0.0/files/model.onnx")
    assert reply.status_code == 200 and reply.data[:2] == b"\x08\x08"  # an ONNX ModelProto


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
    assert "Requests per 15m No requests in this window." in text
    assert "Latency p50 / p95 / p99 No latency measured in this window." in text
    assert "Accuracy (95% interval) No judged predictions in this window." in text
    assert "Drift share No drift run in this window." in text


def log_traffic(hub, name: str = "demo-adder") -> None:
    """Calls of NAME 1.0.0 logged as the hub logs them: four 40 minutes ago (one failed, one made
    straight to the model's server), two three days ago; feedback judges two of the recent ones."""
    version_id = hub.catalog.resolve(name, "1.0.0").id
    calls = [(40, "ok", "hub"), (40, "error", "hub"), (40, "ok", "hub"), (40, "ok", "direct")]
    calls += [(3 * 1440, "ok", "hub")] * 2
    ids, now = [], utcnow()
    for minutes_ago, status, source in calls:
        at = now - timedelta(minutes=minutes_ago)
        record = PredictionRecord(
            version_id=version_id, model=name, version="1.0.0", latency_ms=4.0 + len(ids), status=status,
            error="boom" if status == "error" else None, source=source, created_at=at,
        )  # fmt: skip
        ids.append(hub.predlog.record(record))
    hub.feedback(ids[0], {"correct": True})
    hub.feedback(ids[2], {"correct": False})
    hub.predlog.flush()


def chart_of(page: str, name: str) -> str:
    return page.split(f'<figure class="chart" id="chart-{name}">', 1)[1].split("</figure>", 1)[0]


def x_labels(page: str, name: str) -> list[str]:
    return re.findall(r'<text class="tick x-tick"[^>]*>([^<]+)</text>', chart_of(page, name))


def current_window(page: str) -> list[str]:
    return re.findall(r'<a href="[^"]*" aria-current="true">([^<]+)</a>', page.split('id="scorecard"')[1])


def test_scorecard_draws_traffic_latency_and_accuracy_over_the_last_24h(hub, client, publish):
    publish()
    log_traffic(hub)
    page = get(client, "/models/demo-adder")
    assert current_window(page) == ["24h"]
    text = text_of(page)
    assert "Requests 4 Error rate 25.0% 1 errors" in text
    assert "Direct calls 1 3 through the hub" in text
    traffic = chart_of(page, "traffic")
    assert '<svg viewBox="0 0 360 190" role="img" aria-label="Requests per 15m">' in traffic
    assert ">req/15m</text>" in traffic and ">UTC</text>" in traffic
    assert "through the hub 3 direct 1 errors 1" in text_of(traffic)
    assert all(re.fullmatch(r"\d\d:\d\d", label) for label in x_labels(page, "traffic"))
    assert 4 <= len(x_labels(page, "traffic")) <= 6
    assert re.search(r"<title>\w{3} \d+ \d\d:\d\d UTC: 4 requests \(1 direct\), 1 errors</title>", traffic)
    latency = chart_of(page, "latency")
    assert re.findall(r'<g class="line line-(p\d\d)">', latency) == ["p50", "p95", "p99"]
    assert ">ms</text>" in latency
    accuracy = chart_of(page, "accuracy")
    assert '<polygon class="band"' in accuracy and ">100%</text>" in accuracy
    assert "50.0% right of 2 judged (95% CI 9.4%–90.5%)" in accuracy


def test_window_picker_keeps_the_version_and_redraws_the_charts_over_days(hub, client, publish):
    publish()
    log_traffic(hub)
    page = get(client, "/models/demo-adder?version=1.0.0&window=7d")
    assert current_window(page) == ["7d"]
    links = Elements(page.split('<nav class="windows"')[1].split("</nav>")[0]).find("a")
    assert links[0]["href"] == "/models/demo-adder?version=1.0.0&window=1h#scorecard"
    assert "Requests 6 Error rate 16.7%" in text_of(page)
    labels = x_labels(page, "traffic")
    assert labels and all(re.fullmatch(r"[A-Z][a-z]{2} \d{1,2}", label) for label in labels)
    assert x_labels(get(client, "/models/demo-adder?window=1h"), "traffic")[0].count(":") == 1
    for window in ("30d", "all"):
        page = get(client, f"/models/demo-adder?window={window}")
        assert current_window(page) == [window] and "Requests 6 " in text_of(page)


def test_a_window_that_is_not_one_shows_the_last_24h_and_says_why(hub, client, publish):
    publish()
    reply = client.get("/models/demo-adder?window=3weeks")
    assert reply.status_code == 400
    page = reply.get_data(as_text=True)
    assert current_window(page) == ["24h"]
    assert "Showing the last 24h; pick one of 1h, 24h, 7d, 30d, all." in text_of(page)
    assert "3weeks" in text_of(page)


def try_it_values(page: str) -> list[str]:
    """The values of the try-it form's fields (web/tryit.py; tests/test_tryit.py: placeholders and more)."""
    return [a["value"] for tag, a in Elements(page).tags if tag == "input" and "data-part" in a]


def test_try_it_form_has_a_field_per_value_prefilled_with_the_first_example(client, publish):
    publish(examples=[{"inputs": {"x": [[1.0, 2.0]]}}, {"inputs": {"x": [[9.0, 9.0]]}}])
    page = get(client, "/models/demo-adder")
    form = Elements(page)
    assert form.find("form", id="try-it")[0]["data-url"] == "/api/v1/models/demo-adder/predict?version=1.0.0"
    assert try_it_values(page) == ["1.0", "2.0"]
    assert "x x[0] x[1] float32, shape n × 2; sent as one row" in text_of(page)
    assert len(form.find("button", type="button", **{"data-example": "1"})) == 1


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
    page = get(client, "/models/demo-adder")
    for form in ('id="try-feedback"', 'id="feedback-form"'):  # inline on a try-it answer, and the section
        options = Elements(page.split(form)[1].split("</form>")[0]).find("option")
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
    reply = client.get("/models/demo-adder")
    csp = reply.headers["Content-Security-Policy"]
    assert "script-src 'self'" in csp and "object-src 'none'" in csp and "frame-ancestors 'none'" in csp
    assert "img-src 'self' data:;" in csp  # a card's images from other sites stay out by default
    assert reply.headers["X-Content-Type-Options"] == "nosniff"


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


def test_leaderboard_shows_the_latest_drift_share_beside_accuracy_and_p95(hub, client, publish):
    publish(name="alpha")
    publish(name="beta")
    version_id = hub.catalog.resolve("alpha", "1.0.0").id
    window = (utcnow() - timedelta(days=1), utcnow())
    for status, share in [
        (DriftRunStatus.DONE, 0.25),
        (DriftRunStatus.DONE, 0.75),
        (DriftRunStatus.FAILED, None),
    ]:
        driftruns.record_run(version_id, window, "package", status=status, share=share, drifted=None)
    board = hub.leaderboard("regression")
    assert [(r["model"], r["drift_share"]) for r in board["versions"]] == [("alpha", 0.75), ("beta", None)]
    page = get(client, "/tasks/regression")
    assert "# Version Accuracy 95% interval Drift p95 Feedback Requests Errors" in text_of(page)
    assert re.findall(r'<td class="drift-share">([^<]+)</td>', page) == ["75.0%", "—"]
    rows = client.get("/api/v1/tasks/regression/leaderboard").get_json()["versions"]
    assert [r["drift_share"] for r in rows] == [0.75, None]
    schemas = client.get("/api/v1/openapi.json").get_json()["components"]["schemas"]
    described = schemas["Leaderboard"]["properties"]["versions"]["items"]
    assert set(described["required"]) == set(rows[0])
    assert described["properties"]["drift_share"] == {"type": ["number", "null"]}
