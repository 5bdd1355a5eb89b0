"""The compare view, the leaderboard and the no-script feedback form in a real Chromium, against the
session hub of tests/browser.py (iris-onnx and wine-python, both tabular-classification, deployed).
Screenshots land in tests/browser.py's OUTPUT (compare.png, leaderboard.png)."""

from __future__ import annotations

import pytest

from tests.browser import axe_violations, new_page, shot

pytestmark = pytest.mark.slow
TASK = "tabular-classification"


def test_the_leaderboard_of_a_task_lists_both_models_and_links_to_the_compare_view(page):
    page.goto(f"/tasks/{TASK}")
    rows = page.locator("table.leaderboard tbody tr")
    assert rows.count() == 2
    names = page.locator("tbody td:nth-child(2) a:first-child").all_inner_texts()
    assert sorted(names) == ["iris-onnx@1.0.0", "wine-python@1.0.0"]
    shot(page, "leaderboard")
    assert axe_violations(page) == []
    page.locator("a.vs-first").click()
    page.wait_for_url("**/compare?**")
    assert " vs " in page.locator("h1").inner_text()


def test_compare_runs_one_input_through_both_models_and_shows_each_answer(page):
    page.goto("/models/iris-onnx")
    page.locator("a", has_text="compare").first.click()
    page.wait_for_url("**/compare?**")
    assert page.locator("h1").inner_text() == "iris-onnx@1.0.0 vs wine-python@1.0.0"
    page.get_by_role("button", name="Run both").click()
    page.wait_for_selector("#answer-1")
    first, second = page.locator("#answer-0").inner_text(), page.locator("#answer-1").inner_text()
    assert "prediction" in first and " ms " in first  # iris answers its own example
    assert "do not fit wine-python@1.0.0" in second  # wine's schema names other inputs: a 422, shown
    shot(page, "compare")
    assert axe_violations(page) == []


def test_the_feedback_form_works_with_javascript_off(browser, hub_server):
    context, tab = new_page(browser, hub_server, java_script_enabled=False)
    try:
        tab.goto("/models/iris-onnx")
        form = tab.locator("#feedback-form")
        form.get_by_label("Comment").fill("Looks right to me")
        form.locator("button[type=submit]").click()
        tab.wait_for_url("**/models/iris-onnx?**feedback=*")
        assert "Thank" in tab.locator("#feedback").inner_text()
    finally:
        context.close()
