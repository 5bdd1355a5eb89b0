"""The review page in a real headless Chromium (Playwright, tests/browser.py) over the conftest's app
(SQLite, then PostgreSQL) served by werkzeug: a signed-in reviewer labels one item with a key press
and the next with a click, and each label is stored as feedback on its prediction; `s` skips; with
JavaScript off the buttons still answer; axe-core finds nothing serious; on a 375 px phone an image
input is shown as an image and nothing scrolls sideways. Screenshots:
review.png, review-phone.png under tests/browser.py's OUTPUT."""

from __future__ import annotations

import re
from dataclasses import replace
from datetime import timedelta

import pytest

from monitor.predlog import PredictionRecord
from monitor.tables import Feedback
from tests import test_pages_in_browser, test_review
from tests.browser import axe_violations, shot
from tests.test_review import call, chosen
from vocab.times import utcnow

pytestmark = pytest.mark.slow
live_url = test_pages_in_browser.live_url  # a werkzeug server over the conftest `app`
sorter = test_review.sorter  # sorter 1.0.0 and 1.1.0: labels cat, dog, fox


def signed_in(browser, live_url, hub, **context):
    opened = browser.new_context(base_url=live_url, **context)
    opened.set_default_timeout(15_000)
    tab = opened.new_page()
    tab.goto("/sign-in")
    tab.fill("input[name=token]", (hub.config.home / "admin-token").read_text().strip())
    tab.locator("form [type=submit]").click()
    tab.wait_for_url(f"{live_url}/")
    return opened, tab


def test_a_key_press_and_a_click_label_items_and_each_becomes_feedback(browser, live_url, sorter):
    first = call(sorter, [0.45, 0.40, 0.15])  # margin 0.05: shown first
    second = call(sorter, [0.5, 0.35, 0.15], x=(7.0, 8.0))  # margin 0.15
    items = chosen(sorter)
    context, tab = signed_in(browser, live_url, sorter)
    try:
        tab.goto("/models/sorter")
        tab.get_by_role("link", name="Review queue").click()
        tab.wait_for_url(re.compile(r"/models/sorter/review$"))
        assert tab.locator("#review-title").inner_text().startswith(f"Item {items[first].id}")
        assert tab.locator("#review-answer").inner_text() == "cat"
        assert tab.evaluate("document.activeElement.textContent.trim()") == "1 cat (the answer)"  # focused
        assert axe_violations(tab) == []
        shot(tab, "review")
        tab.keyboard.press("2")
        tab.wait_for_url(re.compile(r"done="))
        assert tab.locator("#review-done").inner_text() == f"Item {items[first].id}: labelled dog. Thank you."
        assert tab.locator("#review-title").inner_text().startswith(f"Item {items[second].id}")
        assert tab.locator("table.review-input td").all_inner_texts() == ["7", "8"]
        tab.get_by_role("button", name="fox").click()
        tab.locator("#review-empty").wait_for()
    finally:
        context.close()
    given = {f.prediction_id: (f.label, f.correct) for f in Feedback.select()}
    assert given == {first: ("dog", False), second: ("fox", False)}
    assert sorter.review_item("sorter", items[first].id)["reviewer"] == "admin"


def test_an_image_input_on_a_phone_is_an_image_and_nothing_scrolls_sideways(
    browser, live_url, sorter, publish
):
    labels = [f"digit-{n}-with-a-long-name" for n in range(10)]
    image = {"image": {"dtype": "float32", "shape": [-1, 1, 8, 8]}}
    probs = {
        "probabilities": {"dtype": "float32", "shape": [-1, 10]},
        "label": {"dtype": "int64", "shape": [-1]},
    }
    publish(name="digits", framework="python", artifact=None, entrypoint="predict.py:Model", labels=labels,
            examples=[], inputs=image, outputs=probs)  # fmt: skip
    version = sorter.catalog.resolve("digits", "1.0.0")
    pixels = [[[float((x + y) % 16) for x in range(8)] for y in range(8)]]
    outputs = {"label": [3], "probabilities": [[0.3, 0.05, 0.05, 0.31, 0.29] + [0.0] * 5]}
    at = utcnow() - timedelta(minutes=3)
    record = PredictionRecord(version.id, "digits", "1.0.0", 1.0, inputs={"image": [pixels]}, outputs=outputs)
    sorter.predlog.record(replace(record, created_at=at))
    chosen(sorter)
    context, tab = signed_in(
        browser, live_url, sorter, viewport={"width": 375, "height": 812}, is_mobile=True
    )
    try:
        tab.goto("/models/digits/review")
        img = tab.get_by_role("img", name="The input image as an image")
        assert img.get_attribute("src").startswith("data:image/png;base64,")
        assert tab.evaluate("document.querySelector('.review-image img').naturalWidth") == 8
        assert tab.locator(".review-labels button").count() == 11  # ten labels and skip
        assert tab.locator(".review-labels button[data-key]").count() == 10  # 1..9 and s
        assert tab.evaluate("document.documentElement.scrollWidth") <= 375
        shot(tab, "review-phone")
    finally:
        context.close()


def test_s_skips_and_without_javascript_the_buttons_are_plain_forms(browser, live_url, sorter):
    skipped = call(sorter, [0.45, 0.40, 0.15])
    labelled = call(sorter, [0.5, 0.35, 0.15])
    items = chosen(sorter)
    context, tab = signed_in(browser, live_url, sorter)
    try:
        tab.goto("/models/sorter/review")
        tab.keyboard.press("s")
        tab.wait_for_url(re.compile(r"done="))
        assert tab.locator("#review-done").inner_text() == f"Item {items[skipped].id}: skipped. Thank you."
    finally:
        context.close()
    context, tab = signed_in(browser, live_url, sorter, java_script_enabled=False)
    try:
        tab.goto("/models/sorter/review")
        tab.keyboard.press("3")  # no script: a key does nothing
        assert tab.locator("#review-done").count() == 0
        tab.get_by_role("button", name="fox").click()
        tab.wait_for_url(re.compile(r"done="))
        assert (
            tab.locator("#review-done").inner_text() == f"Item {items[labelled].id}: labelled fox. Thank you."
        )
    finally:
        context.close()
    assert [(f.prediction_id, f.label) for f in Feedback.select()] == [(labelled, "fox")]
    assert sorter.review_item("sorter", items[skipped].id)["state"] == "skipped"
