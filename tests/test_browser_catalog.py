"""The catalog and the model page's weight in a real Chromium, against the session hub of
tests/browser.py (iris-onnx and wine-python deployed; other browser modules may add models)."""

from __future__ import annotations

import pytest
from playwright.sync_api import expect

from tests.browser import axe_violations, shot

pytestmark = pytest.mark.slow
MAX_PAGE_BYTES = 200 * 1024  # the model page with its charts, styles and script


def card_names(page) -> list[str]:
    return page.locator(".model-card h2").all_inner_texts()


def test_typing_in_the_search_box_narrows_the_list_without_a_reload(page):
    page.goto("/")
    assert {"iris-onnx", "wine-python"} <= set(card_names(page))
    page.evaluate("window.stillHere = true")  # gone if the page were loaded again
    page.locator("#catalog-q").press_sequentially("iris", delay=40)
    expect(page.locator(".model-card")).to_have_count(1)
    assert card_names(page) == ["iris-onnx"]
    assert page.evaluate("window.stillHere") is True
    assert "q=iris" in page.url  # the URL follows, so the narrowed list can be shared
    page.locator("#catalog-q").fill("")
    expect(page.locator(".model-card").nth(1)).to_be_visible()


def test_a_framework_filter_and_a_sort_change_the_list(page):
    page.goto("/")
    page.get_by_label("Framework").select_option("python")
    expect(page.locator(".model-card")).to_have_count(1)
    assert card_names(page) == ["wine-python"]
    page.get_by_label("Framework").select_option("")
    page.get_by_label("Sort by").select_option("name")
    page.wait_for_url("**sort=name**")
    expect(page.locator(".model-card").nth(1)).to_be_visible()
    names = card_names(page)
    assert names == sorted(names)


def test_the_catalog_works_without_javascript_as_a_plain_get_form(browser, hub_server):
    context = browser.new_context(base_url=hub_server.url, java_script_enabled=False)
    try:
        tab = context.new_page()
        tab.goto("/")
        tab.locator("#catalog-q").fill("wine")
        tab.get_by_role("button", name="Search").click()
        tab.wait_for_url("**q=wine**")
        assert card_names(tab) == ["wine-python"]
    finally:
        context.close()


def test_the_catalog_fits_a_phone(phone):
    phone.goto("/")
    assert phone.evaluate("document.documentElement.scrollWidth <= window.innerWidth")
    shot(phone, "catalog-phone")
    assert axe_violations(phone) == []


def test_the_model_page_weighs_under_200_kb_and_loads_nothing_from_elsewhere(page, hub_server):
    loaded: list[tuple[str, int]] = []
    page.on("requestfinished", lambda r: loaded.append((r.url, r.sizes()["responseBodySize"])))
    page.goto("/models/iris-onnx", wait_until="networkidle")
    assert page.locator("#chart-traffic, .chart").count() > 0  # the charts are part of the weight
    total = sum(size for _, size in loaded)
    print(f"model page: {total:,} bytes in {len(loaded)} responses")
    assert total <= MAX_PAGE_BYTES, loaded
    assert all(url.startswith(hub_server.url) for url, _ in loaded), loaded
