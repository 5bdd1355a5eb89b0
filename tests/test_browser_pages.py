"""The catalog and a model page in a real headless Chromium (Playwright, tests/browser.py) against one
hub per session with iris-onnx and wine-python deployed: axe-core finds nothing serious or critical,
the model page fits a 375 px phone, the keyboard reaches the try-it submit, a prediction runs. And on
the conftest's per-test app (SQLite, then PostgreSQL): the model page follows a running build live.

Screenshots (catalog.png, model-after-prediction.png) are written to $AIDHUB_TEST_OUTPUT, else to
test-output/ at the repository's root.
"""

from __future__ import annotations

import re

from registry.models import BuildRow
from tests import test_pages_in_browser
from tests.browser import axe_violations, shot
from tests.demo_package import demo_build
from vocab.states import BuildStatus

live_url = test_pages_in_browser.live_url  # a werkzeug server over the conftest `app`

MODEL = "/models/iris-onnx"
SUBMIT = "#try-it [type=submit]"
MAX_TABS = 300


def test_catalog_lists_the_deployed_examples_and_axe_finds_nothing_serious(page):
    page.goto("/")
    assert page.locator("html[data-js=ready]").count() == 1, "hub.js did not run"
    for name in ("iris-onnx", "wine-python"):
        assert page.get_by_role("link", name=name, exact=True).first.is_visible(), name
    assert axe_violations(page) == []
    assert shot(page, "catalog").is_file()


def test_a_model_opened_from_the_catalog_has_no_serious_axe_violations(page):
    page.goto("/")
    page.get_by_role("link", name="iris-onnx", exact=True).first.click()
    page.wait_for_url(re.compile(r"/models/iris-onnx$"))
    assert page.locator("header.model-head h1").inner_text() == "iris-onnx"
    assert page.locator(".state-ready").first.is_visible()
    assert axe_violations(page) == []


def test_model_page_at_375_px_has_no_sideways_scroll(phone):
    phone.goto(MODEL)
    widths = phone.evaluate(
        "({page: document.documentElement.scrollWidth, view: document.documentElement.clientWidth,"
        " body: document.body.scrollWidth})"
    )
    assert widths["view"] == 375 and widths["page"] <= 375 and widths["body"] <= 375, widths
    assert phone.locator(SUBMIT).is_visible()


def test_tab_reaches_the_try_it_submit_with_a_visible_focus(page):
    page.goto(MODEL)
    page.locator("body").focus()
    for presses in range(1, MAX_TABS + 1):  # noqa: B007 (read after the loop)
        page.keyboard.press("Tab")
        if page.evaluate(f"document.activeElement.matches({SUBMIT!r})"):
            break
    else:
        raise AssertionError(f"{MAX_TABS} presses of Tab never reached the Predict button")
    outline = page.evaluate("getComputedStyle(document.activeElement).outlineStyle")
    assert outline not in ("", "none"), f"no visible focus on the Predict button ({presses} tabs)"


def test_a_prediction_from_the_prefilled_example_is_shown_and_screenshot(page):
    page.goto(MODEL)
    with page.expect_response(
        lambda r: r.url.split("?")[0].endswith("/predict") and r.request.method == "POST"
    ) as sent:
        page.locator(SUBMIT).click()
    reply = sent.value
    assert reply.status == 200, reply.text()
    answer = reply.json()
    assert answer["outputs"]["label"] == [0]  # setosa: iris-onnx's first example
    page.locator("#try-status").filter(has_text=answer["id"]).wait_for()
    assert axe_violations(page) == []  # with the answer and its feedback form shown
    assert shot(page, "model-after-prediction").is_file()


def test_copy_buttons_show_with_javascript_and_copy_the_snippet(page):
    page.context.grant_permissions(["clipboard-read", "clipboard-write"])
    page.goto(MODEL)
    button = page.locator("button[data-copy=python-requests]")
    assert button.is_visible()
    button.click()
    page.locator("button[data-copy=python-requests]", has_text="Copied").wait_for()
    copied = page.evaluate("navigator.clipboard.readText()")
    assert copied == page.locator("#python-requests").inner_text() and "requests.post(" in copied
    compile(copied, "python-requests", "exec")


def test_without_javascript_the_snippets_are_plain_text_and_no_copy_button_shows(browser, hub_server):
    context = browser.new_context(base_url=hub_server.url, java_script_enabled=False)
    try:
        tab = context.new_page()
        tab.goto(MODEL)
        assert tab.locator("html[data-js=ready]").count() == 0
        assert (
            tab.locator("#python-triton").is_visible() and not tab.locator("button.copy").first.is_visible()
        )
        assert "import tritonclient.http as httpclient" in tab.locator("#python-triton").inner_text()
    finally:
        context.close()


def test_model_page_follows_a_running_build_and_updates_its_log_inline(browser, live_url, publish):
    publish()
    build_id = demo_build(BuildStatus.RUNNING, "installing numpy\n")
    context = browser.new_context(base_url=live_url)
    try:
        tab = context.new_page()
        tab.goto("/models/demo-adder#builds")
        assert tab.locator("#latest-build").get_attribute("open") is not None
        assert tab.locator("#latest-build-log").inner_text() == "installing numpy"
        ended = {"status": BuildStatus.SUCCEEDED, "log": "installing numpy\nserver ready\n"}
        BuildRow.update(**ended).where(BuildRow.id == build_id).execute()
        tab.locator("#build-polling").filter(has_text="The build ended.").wait_for()
        assert tab.locator("#latest-build-log").inner_text() == "installing numpy\nserver ready"
        assert tab.locator("#latest-build-status").inner_text() == "succeeded"
    finally:
        context.close()
