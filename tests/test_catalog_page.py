"""The catalog page (web/catalog_page.py, hub/listing.py) through the Flask test client, on a real Hub
per test (SQLite file, then PostgreSQL): search, filters with their counts, sorts, pages with stable
URLs, the cards, the 400 for a value that is not one, the form without JavaScript, and a number of
queries that does not grow with the number of models.
"""

from __future__ import annotations

import re
from dataclasses import fields
from datetime import timedelta
from pathlib import Path
from urllib.parse import quote

from benchmarks.catalog import add_models, counted_queries
from hub.listing import CatalogQuery
from monitor.alerttables import AlertRule, AlertStatus
from monitor.predlog import PredictionRecord
from registry.models import DeploymentRow, ModelRow
from tests.page_reading import Elements, get, text_of
from vocab.alerts import AlertState
from vocab.times import utcnow

HUB_JS = Path(__file__).resolve().parent.parent / "web" / "static" / "hub.js"


def cards(page: str) -> list[str]:
    """The models' names, in the order their cards are shown."""
    return re.findall(r'<li class="model-card">\s*<h2><a href="[^"]+">([^<]+)</a>', page)


def options(page: str, name: str) -> list[str]:
    """The visible options of the form's select `name`."""
    select = page.split(f'<select name="{name}"', 1)[1].split("</select>", 1)[0]
    return [text_of(o) for o in re.findall(r"<option[^>]*>[^<]*</option>", select)]


def publish_three(publish, hub) -> None:
    """alpha: onnx regression, CPU, ready; beta: python text-classification needing a GPU; gamma: onnx
    regression with an optional GPU, tagged vision."""
    publish(name="alpha", summary="Adds one", tags=["tiny"])
    publish(
        name="beta", task="text-classification", framework="python", artifact=None,
        entrypoint="predict.py:Model", inputs={"text": {"dtype": "string", "shape": [-1]}},
        examples=[{"inputs": {"text": ["hi"]}}], tags=["nlp"], summary="Reads reviews",
        resources={"cpu": 1, "memory": "1Gi", "gpu": 1},
    )  # fmt: skip
    publish(name="gamma", summary="Sees things", tags=["vision", "tiny"], resources={"gpu": "optional"})
    DeploymentRow.create(version=hub.catalog.resolve("alpha", "1.0.0"), status="ready", runner="process")


def call(hub, name: str, count: int, days_ago: float = 0.0, verdicts: tuple = ()) -> None:
    """`count` calls of NAME 1.0.0 logged `days_ago`; feedback on the first ones, one verdict each."""
    version_id = hub.catalog.resolve(name, "1.0.0").id
    at = utcnow() - timedelta(days=days_ago)
    for i in range(count):
        record = PredictionRecord(
            version_id=version_id, model=name, version="1.0.0", latency_ms=2.0, created_at=at
        )
        hub.predlog.record(record)
        if i < len(verdicts):
            hub.feedback(record.id, {"correct": verdicts[i]})
    hub.predlog.flush()


# --- the form, without JavaScript ---------------------------------------------------------------------


def test_the_form_is_a_labelled_get_form_that_works_without_javascript(client, publish, hub):
    publish_three(publish, hub)
    page = get(client, "/")
    form = Elements(page).find("form", id="catalog-form")[0]
    assert (form["method"], form["action"], form["role"]) == ("get", "/", "search")
    assert re.search(r'<label class="grow">Search <input type="search" id="catalog-q" name="q"', page)
    for name, label in [("task", "Task"), ("framework", "Framework"), ("state", "State"), ("gpu", "GPU")]:
        assert re.search(rf"<label>{label}\s*<select name=\"{name}\"", page), name
    assert re.search(r'<label>Sort by\s*<select name="sort">', page)
    assert Elements(page).find("button", type="submit")
    assert not re.search(r"<script(?![^>]*\bsrc=)", page)  # no inline script: the CSP forbids them
    # what a browser without JavaScript sends: every field, the empty ones too
    sent = get(client, "/?q=adds&task=regression&framework=&state=&gpu=&sort=popular")
    assert cards(sent) == ["alpha"]
    assert 'value="adds"' in sent and "1 model" in text_of(sent)


def test_search_as_you_type_lives_in_hub_js_and_writes_urls_as_the_server_does(client, publish, hub):
    publish_three(publish, hub)
    form = Elements(get(client, "/")).find("form", id="catalog-form")[0]
    assert form["data-order"].split() == [f.name for f in fields(CatalogQuery)]
    assert form["data-default-sort"] == "popular"
    script = HUB_JS.read_text()
    assert "const CATALOG_DEBOUNCE_MS = 300;" in script and 'history.replaceState(null, "", url)' in script
    assert 'document.addEventListener("DOMContentLoaded", setupCatalogSearch);' in script
    assert Elements(get(client, "/")).find("div", id="catalog-results")  # what the script swaps


# --- search, filters, facets ------------------------------------------------------------------------


def test_search_words_match_the_name_summary_task_and_tags(client, publish, hub):
    publish_three(publish, hub)
    assert cards(get(client, "/?q=ALPH")) == ["alpha"]
    assert cards(get(client, "/?q=reviews")) == ["beta"]
    assert cards(get(client, "/?q=text-class")) == ["beta"]
    assert cards(get(client, "/?q=vision")) == ["gamma"]
    for wildcard in ("%", "_", "a_p", "\\"):  # LIKE's wildcards and its escape match only themselves
        assert cards(get(client, "/?q=" + quote(wildcard))) == [], wildcard
    assert "No model matches these filters." in text_of(get(client, "/?q=nothing-like-this"))


def test_filters_by_task_framework_tag_gpu_and_state(client, publish, hub):
    publish_three(publish, hub)
    assert sorted(cards(get(client, "/?task=regression"))) == ["alpha", "gamma"]
    assert cards(get(client, "/?framework=python")) == ["beta"]
    assert sorted(cards(get(client, "/?tag=tiny"))) == ["alpha", "gamma"]
    assert cards(get(client, "/?gpu=required")) == ["beta"]
    assert cards(get(client, "/?gpu=optional")) == ["gamma"]
    assert cards(get(client, "/?gpu=none")) == ["alpha"]
    assert cards(get(client, "/?state=ready")) == ["alpha"]
    assert sorted(cards(get(client, "/?state=not+deployed"))) == ["beta", "gamma"]
    assert cards(get(client, "/?task=regression&framework=onnx&tag=tiny&gpu=optional")) == ["gamma"]
    assert "No model matches these filters." in text_of(get(client, "/?framework=python&state=ready"))


def test_facets_count_models_under_the_other_filters(client, publish, hub):
    publish_three(publish, hub)
    page = get(client, "/?task=regression")
    # the task list still offers the other task (picking it replaces this one) ...
    assert options(page, "task") == ["all tasks", "regression (2)", "text-classification (1)"]
    # ... and the others count what the chosen task leaves
    assert options(page, "framework") == ["all frameworks", "onnx (2)"]
    assert options(page, "state") == ["any state", "not deployed (1)", "ready (1)"]
    assert options(page, "gpu") == ["any hardware", "CPU only (1)", "GPU optional (1)"]
    assert [o["value"] for o in Elements(page).find("option") if "selected" in o][:1] == ["regression"]
    nav = page.split('<nav class="tag-facet"', 1)[1].split("</nav>", 1)[0]
    tags = re.findall(r'<a class="tag" href="([^"]+)"[^>]*>([^<]+) <span class="tag-count">(\d+)</span>', nav)
    assert tags == [
        ("/?task=regression&amp;tag=tiny", "tiny", "2"),
        ("/?task=regression&amp;tag=vision", "vision", "1"),
    ]


# --- sorts ------------------------------------------------------------------------------------------


def test_sorts_by_calls_in_30_days_by_wilson_lower_bound_and_by_latest_publish(client, publish, hub):
    publish_three(publish, hub)
    call(hub, "alpha", 3, verdicts=(True,) * 3)  # 3/3: little evidence
    call(hub, "beta", 20, verdicts=(True,) * 18 + (False,) * 2)  # 18/20: a higher lower bound
    call(hub, "gamma", 2)
    call(hub, "gamma", 30, days_ago=40)  # older than 30 days: not counted
    assert cards(get(client, "/")) == ["beta", "alpha", "gamma"]
    assert cards(get(client, "/?sort=popular")) == ["beta", "alpha", "gamma"]
    assert cards(get(client, "/?sort=accuracy")) == ["beta", "alpha", "gamma"]  # gamma: no feedback
    now = utcnow()
    for name, hours_ago in [("alpha", 1), ("beta", 3), ("gamma", 2)]:
        ModelRow.update(updated_at=now - timedelta(hours=hours_ago)).where(ModelRow.name == name).execute()
    assert cards(get(client, "/?sort=recent")) == ["alpha", "gamma", "beta"]
    page = get(client, "/?sort=accuracy")
    assert [o["value"] for o in Elements(page).find("option") if "selected" in o] == ["accuracy"]


def test_a_card_shows_versions_state_framework_calls_accuracy_with_n_and_alerts(client, publish, hub):
    publish_three(publish, hub)
    publish(name="alpha", version="1.1.0", summary="Adds one", tags=["tiny"])
    call(hub, "alpha", 20, verdicts=(True,) * 18 + (False,) * 2)
    rule = AlertRule.create(model="alpha", condition="error_rate > 0.1", metric="error_rate", op=">",
                            threshold=0.1, window_seconds=600, created_at=utcnow())  # fmt: skip
    AlertStatus.create(rule_id=rule.id, version_id=1, version="1.0.0", state=AlertState.FIRING,
                       since=utcnow(), checked_at=utcnow())  # fmt: skip
    hub.set_alias("alpha", "production", "1.0.0")
    text, today = text_of(get(client, "/")), utcnow().date().isoformat()
    assert (
        "alpha regression Adds one tiny production 1.0.0 · latest 1.1.0 · ready onnx · 20 calls in 30 days "
        f"· accuracy 90.0% of 20 judged (≥ 69.9% at 95%) · published {today} 1 alert firing"
    ) in text
    assert (
        "beta text-classification Reads reviews nlp latest 1.0.0 · not deployed "
        f"python · 0 calls in 30 days · no feedback yet · published {today}"
    ) in text


# --- pages ------------------------------------------------------------------------------------------


def test_pages_of_24_with_links_that_keep_every_parameter(client, hub):
    add_models(hub.db, 30)
    first = get(client, "/?q=bench&sort=recent")
    assert len(cards(first)) == 24
    assert "30 models · showing 1–24" in text_of(first)
    assert Elements(first).find("a", rel="next")[0]["href"] == "/?q=bench&sort=recent&page=2"
    second = get(client, "/?q=bench&sort=recent&page=2")
    assert len(cards(second)) == 6 and not set(cards(first)) & set(cards(second))
    assert "30 models · showing 25–30" in text_of(second)
    assert Elements(second).find("a", rel="prev")[0]["href"] == "/?q=bench&sort=recent"  # page 1: the default
    assert Elements(second).find("span", **{"aria-current": "page"})
    # a filter link starts again at page 1 and keeps the rest
    task_links = {a["href"] for a in Elements(second).find("a", **{"class": "task"})}
    assert all(re.fullmatch(r"/\?q=bench&task=[a-z-]+&sort=recent", h) for h in task_links), task_links
    # however the parameters are written, the links are written one way
    reordered = get(client, "/?sort=recent&page=2&q=bench")
    assert cards(reordered) == cards(second)
    assert Elements(reordered).find("a", rel="prev")[0]["href"] == "/?q=bench&sort=recent"


def test_a_sort_page_gpu_or_state_that_is_not_one_is_a_400_naming_it_and_the_choices(client, publish, hub):
    publish_three(publish, hub)
    cases = [
        ("/?sort=best", "Unknown sort 'best': use one of popular, accuracy, recent, name."),
        ("/?page=x", "Unknown page 'x': use a whole number from 1."),
        ("/?page=0", "Unknown page '0': use a whole number from 1."),
        ("/?per_page=500", "Unknown per page '500': use a whole number from 1 to 100."),
        ("/?gpu=lots", "Unknown gpu 'lots': use one of none, optional, required."),
        ("/?state=dancing", "Unknown state 'dancing': use one of starting, ready, unhealthy, failed, "
                            "stopping, stopped, not deployed."),
        ("/?page=5", "Page 5 is past the last page, 1."),
    ]  # fmt: skip
    for url, problem in cases:
        page = get(client, url, status=400)
        assert problem in text_of(page), url
        assert len(cards(page)) == 3, url  # the default is shown instead


# --- queries ----------------------------------------------------------------------------------------


def queries_of(client, hub, url: str) -> int:
    get(client, url)  # warm: the token is looked up once
    with counted_queries(hub.db) as seen:
        get(client, url)
    return len(seen)


def test_the_number_of_queries_does_not_grow_with_the_number_of_models(client, hub):
    add_models(hub.db, 5, prefix="few-")
    task = ModelRow.select().order_by(ModelRow.id).first().task  # a filter that keeps models both times
    urls = ["/", "/?sort=accuracy", "/?sort=recent&page=2&per_page=3", f"/?q=model&task={task}"]
    few = [queries_of(client, hub, url) for url in urls]
    add_models(hub.db, 25, seed=2, prefix="more-")
    many = [queries_of(client, hub, url) for url in urls]
    assert few == many
    assert 4 <= min(few) and max(many) <= 5  # the models, two metrics, the alerts (and a token check)


def test_accuracy_sort_over_more_models_than_a_page_ranks_by_the_lower_bound(client, hub):
    add_models(hub.db, 130)
    bounds = []
    for page in (1, 2, 3, 4, 5, 6):
        text = text_of(get(client, f"/?sort=accuracy&page={page}"))
        bounds += [
            float(low) if low else None for low in re.findall(r"\(≥ ([\d.]+)% at 95%\)|no feedback yet", text)
        ]
    assert len(bounds) == 130
    judged = [b for b in bounds if b is not None]
    assert judged == sorted(judged, reverse=True) and bounds == judged + [None] * (130 - len(judged))


# --- the same listing as JSON -----------------------------------------------------------------------


def test_the_api_lists_every_model_by_name_unless_asked_for_a_page_or_a_sort(client, publish, hub):
    publish_three(publish, hub)
    call(hub, "gamma", 4)
    reply = client.get("/api/v1/models").get_json()
    assert [m["name"] for m in reply["models"]] == ["alpha", "beta", "gamma"]
    assert (reply["total"], reply["page"], reply["pages"], reply["per_page"]) == (3, 1, 1, 0)
    alpha = reply["models"][0]
    assert alpha["deployment"]["status"] == "ready" and alpha["deployment"]["runner"] == "process"
    assert {k: alpha[k] for k in ("latest", "production", "shown", "framework", "gpu", "feedback")} == {
        "latest": "1.0.0", "production": None, "shown": "1.0.0", "framework": "onnx", "gpu": "none",
        "feedback": 0,
    }  # fmt: skip
    assert {"owner", "updated_at", "alerts_firing", "tags", "summary", "task"} <= set(alpha)
    paged = client.get("/api/v1/models?sort=popular&per_page=2&page=1&framework=onnx").get_json()
    assert [(m["name"], m["requests_30d"]) for m in paged["models"]] == [("gamma", 4), ("alpha", 0)]
    assert paged["facets"]["framework"] == [
        {"value": "onnx", "count": 2, "chosen": True}, {"value": "python", "count": 1, "chosen": False}
    ]  # fmt: skip
    assert [m["name"] for m in client.get("/api/v1/models?q=reviews").get_json()["models"]] == ["beta"]


def test_the_api_answers_a_value_that_is_not_one_with_a_400_naming_it(client, publish, hub):
    publish_three(publish, hub)
    for url, problem in [
        ("/api/v1/models?sort=best", "Unknown sort 'best': use one of popular, accuracy, recent, name."),
        ("/api/v1/models?per_page=0", "Unknown per page '0': use a whole number from 1 to 100."),
        ("/api/v1/models?page=3&per_page=2", "Page 3 is past the last page, 2."),
    ]:
        reply = client.get(url)
        assert reply.status_code == 400 and reply.get_json()["error"] == problem, url


def test_the_api_without_paging_lists_every_model_with_its_figures(client, hub):
    add_models(hub.db, 130)  # more than a page of the largest size: the metrics read every model's
    reply = client.get("/api/v1/models").get_json()
    assert reply["total"] == len(reply["models"]) == 130
    names = [m["name"] for m in reply["models"]]
    assert names == sorted(names)
    assert sum(m["alerts_firing"] for m in reply["models"]) == 6  # one model in 25 has a firing rule
    judged = [m for m in reply["models"] if m["feedback"]]
    assert judged and all(0 <= m["accuracy_low"] <= m["accuracy"] <= 1 for m in judged)
    paged = client.get("/api/v1/models?sort=accuracy&per_page=100").get_json()["models"]
    best = sorted((m["accuracy_low"] for m in judged), reverse=True)[:100]
    assert [m["accuracy_low"] for m in paged][: len(best)] == best
