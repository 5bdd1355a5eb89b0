"""The try-it form and the inline feedback on its answer in a real headless Chromium (Playwright, the
harness of tests/browser.py) against one hub per session with iris-onnx deployed, and, for this module,
`tryit-shades`: a tiny ONNX image classifier (an 8 × 8 greyscale image and a scalar) written here.

An example button fills the fields, a value typed and sent by keyboard, an uploaded picture turned
into the tensor in the browser, a 422 shown beside the field it names, feedback on the answer that
changes the page's counts without a reload, the same feedback form with JavaScript disabled, and every
control labelled and reachable by Tab. Screenshots go where tests/browser.py puts them.
"""

from __future__ import annotations

import json
import re
import struct
import zlib
from pathlib import Path

import onnx
import pytest
import yaml
from onnx import TensorProto, helper
from playwright.sync_api import expect

from tests import browser as harness
from tests.browser import shot

IRIS = "/models/iris-onnx"
SHADES = "/models/tryit-shades"
PREDICT = "#try-it [type=submit]"
PICKER = "[data-field=image] input[type=file]"
WHITE, BLACK = [[[[1.0] * 8] * 8]], [[[[0.0] * 8] * 8]]


def shades_model(path: Path) -> None:
    """probabilities = softmax(sum(pixels) * [0.2, -0.2, 0] + [-6.4, 6.4, 0] + bias); label = argmax:
    a white image is `light`, a black one `dark`."""
    weights = helper.make_tensor("w", TensorProto.FLOAT, [64, 3], [0.2, -0.2, 0.0] * 64)
    offset = helper.make_tensor("c", TensorProto.FLOAT, [3], [-6.4, 6.4, 0.0])
    nodes = [
        helper.make_node("Flatten", ["image"], ["flat"], axis=1),
        helper.make_node("MatMul", ["flat", "w"], ["s"]),
        helper.make_node("Add", ["s", "c"], ["t"]), helper.make_node("Add", ["t", "bias"], ["logits"]),
        helper.make_node("Softmax", ["logits"], ["probabilities"], axis=1),
        helper.make_node("ArgMax", ["probabilities"], ["label"], axis=1, keepdims=0),
    ]  # fmt: skip
    inputs = [
        helper.make_tensor_value_info("image", TensorProto.FLOAT, ["batch", 1, 8, 8]),
        helper.make_tensor_value_info("bias", TensorProto.FLOAT, []),
    ]
    outputs = [
        helper.make_tensor_value_info("label", TensorProto.INT64, ["batch"]),
        helper.make_tensor_value_info("probabilities", TensorProto.FLOAT, ["batch", 3]),
    ]
    graph = helper.make_graph(nodes, "shades", inputs, outputs, [weights, offset])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    onnx.save(model, str(path))


def shades_package(root: Path) -> Path:
    root.mkdir(parents=True)
    shades_model(root / "model.onnx")
    manifest = {
        "name": "tryit-shades", "version": "1.0.0", "task": "image-classification", "framework": "onnx",
        "summary": "Light or dark, from an 8 x 8 greyscale image", "artifact": "model.onnx",
        "examples": "examples.json", "labels": ["light", "dark", "grey"],
    }  # fmt: skip
    (root / "aid.yaml").write_text(yaml.safe_dump(manifest))
    (root / "README.md").write_text("# tryit-shades\n\nTells light images from dark ones.\n")
    examples = [{"inputs": {"image": WHITE, "bias": 0.0}}, {"inputs": {"image": BLACK, "bias": 0.0}}]
    (root / "examples.json").write_text(json.dumps(examples))
    return root


@pytest.fixture(scope="module")
def shades(hub_server, tmp_path_factory):
    folder = shades_package(tmp_path_factory.mktemp("shades") / "tryit-shades")
    done = hub_server.aid("publish", str(folder), "--deploy", timeout=harness.DEPLOY_TIMEOUT)
    assert done.returncode == 0, f"{done.stdout}{done.stderr}\n{hub_server.output()}"
    return SHADES


def png(path: Path, width: int, height: int, rgb: tuple[int, int, int]) -> Path:
    """A plain RGB PNG of one colour."""

    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))

    rows = b"".join(b"\x00" + bytes(rgb) * width for _ in range(height))
    header = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    path.write_bytes(
        b"\x89PNG\r\n\x1a\n"
        + chunk(b"IHDR", header)
        + chunk(b"IDAT", zlib.compress(rows))
        + chunk(b"IEND", b"")
    )
    return path


def axe_in_try_it(page) -> list[dict]:
    """axe-core's serious and critical findings on elements of the try-it section (the page's other
    sections are other tests' business)."""
    inside = "target => Boolean(document.querySelector(target)?.closest('#try'))"
    return [
        v
        for v in harness.axe_violations(page)
        if any(page.evaluate(inside, target[-1]) for target, _ in v["nodes"])
    ]


def predicted(page) -> dict:
    """Press Predict and wait for the answer: the reply's JSON and what the page shows of it."""
    with page.expect_response(lambda r: r.url.endswith("/predict") or "/predict?" in r.url) as sent:
        page.locator(PREDICT).click()
    reply = sent.value.json()
    if "id" in reply:
        page.locator("#try-status").filter(has_text=reply["id"]).wait_for()
    else:
        page.locator("#try-status").filter(has_text="HTTP").wait_for()
    return {"reply": reply, **shown(page)}


def shown(page) -> dict:
    return page.evaluate(
        """() => ({
      status: document.querySelector('#try-status').textContent,
      answer: [...document.querySelectorAll('#try-answer .answer')].map(e => e.textContent),
      top: [...document.querySelectorAll('#try-answer .topk li')].map(e => e.innerText.replace(/\\s+/g, ' ')),
      raw: document.querySelector('#try-reply').textContent,
    })"""
    )


def values(page) -> list[str]:
    return page.eval_on_selector_all("#try-it [data-part]", "parts => parts.map(p => p.value)")


def test_an_example_button_fills_the_fields_and_the_answer_names_the_class(page):
    page.goto(IRIS)
    page.get_by_role("button", name="Example 3").click()
    assert values(page) == ["7.2", "3.6", "6.1", "2.5"]
    seen = predicted(page)
    assert seen["reply"]["outputs"]["label"] == [2]
    assert re.fullmatch(r"Prediction \S+ · [\d.]+ ms", seen["status"]), seen
    assert seen["answer"] == ["Answer: virginica"]
    assert [t.split(" ")[0] for t in seen["top"]][0] == "virginica" and len(seen["top"]) == 3
    assert all(re.fullmatch(r"\S+ \d+\.\d%", t) for t in seen["top"]), seen["top"]
    assert json.loads(seen["raw"]) == seen["reply"]["outputs"]  # the raw JSON, in a closed <details>
    assert page.locator("#try-raw").get_attribute("open") is None
    assert shot(page, "tryit-example-answer").is_file()
    assert axe_in_try_it(page) == []  # with the answer and its feedback form shown
    page.locator("#try").screenshot(path=str(harness.OUTPUT / "tryit-example-answer-section.png"))


def test_a_value_typed_in_a_field_is_sent_by_pressing_enter(page):
    page.goto(IRIS)
    for label, typed in (("features.2", "4.5"), ("features.3", "1.5")):
        field = page.get_by_label(label, exact=True)
        field.fill("")
        field.press_sequentially(typed)
    with page.expect_request(lambda r: "/predict" in r.url) as sent:
        page.get_by_label("features.3", exact=True).press("Enter")
    assert sent.value.post_data_json == {"inputs": {"features": [[5.1, 3.8, 4.5, 1.5]]}}
    reply = sent.value.response().json()
    page.locator("#try-status").filter(has_text=reply["id"]).wait_for()
    name = ["setosa", "versicolor", "virginica"][reply["outputs"]["label"][0]]
    assert shown(page)["answer"] == [f"Answer: {name}"]


def test_a_bad_value_shows_the_422_beside_the_field_it_names(page, shades):
    page.goto(shades)
    image = page.get_by_label("image (as JSON)")
    image.fill("[[1, 2]]")
    seen = predicted(page)
    assert seen["status"].startswith("HTTP 422: The inputs do not fit tryit-shades@1.0.0's schema"), seen
    error = page.locator("[data-field=image] .field-error")
    assert error.is_visible()
    assert error.inner_text() == "inputs.image: expected float32 with shape [-1, 1, 8, 8], got shape [1, 2]"
    assert image.get_attribute("aria-invalid") == "true"
    assert error.get_attribute("id") in image.get_attribute("aria-describedby").split()
    assert page.locator("[data-field=bias] .field-error").is_hidden()  # the other field stays unmarked
    assert shot(page, "tryit-422").is_file()
    assert axe_in_try_it(page) == []  # the image field, with its error shown
    page.locator("#try").screenshot(path=str(harness.OUTPUT / "tryit-422-section.png"))


def test_a_value_that_cannot_be_sent_is_marked_before_any_request(page, shades):
    page.goto(shades)
    sent = []
    page.on("request", lambda r: sent.append(r.url) if "/predict" in r.url else None)
    page.get_by_label("image (as JSON)").fill("[[1, 2")
    page.get_by_label("bias", exact=True).fill("")
    page.locator(PREDICT).click()
    assert page.locator("#try-status").inner_text() == "Fix the marked fields; nothing was sent."
    assert page.locator("[data-field=image] .field-error").inner_text().startswith("image: not valid JSON")
    assert page.locator("[data-field=bias] .field-error").inner_text() == "bias: enter a number."
    assert page.locator("#try-it [aria-invalid=true]").count() == 3  # bias; the image's JSON and file picker
    assert page.evaluate("document.activeElement === document.querySelector('#try-it [aria-invalid]')")
    page.get_by_role("button", name="Example 2").click()  # refills both fields and clears the marks
    assert page.locator("[aria-invalid]").count() == 0 and sent == []
    assert predicted(page)["answer"] == ["Answer: dark"]


def test_an_uploaded_picture_becomes_the_image_tensor_and_is_classified(page, shades, tmp_path):
    page.goto(shades)
    page.set_input_files(PICKER, str(png(tmp_path / "white.png", 16, 12, (255, 255, 255))))
    note = page.locator("[data-field=image] .image-note")
    note.filter(has_text="white.png").wait_for()
    assert note.inner_text() == (
        "white.png (16 × 12) as shape [1, 1, 8, 8]: resized to 8 × 8, greyscale, scaled 0..1."
    )
    assert json.loads(page.get_by_label("image (as JSON)").input_value()) == WHITE
    seen = predicted(page)
    assert seen["answer"] == ["Answer: light"] and seen["top"][0].startswith("light 99.")
    page.set_input_files(PICKER, str(png(tmp_path / "navy.png", 4, 30, (0, 0, 40))))
    note.filter(has_text="navy.png").wait_for()
    tensor = json.loads(page.get_by_label("image (as JSON)").input_value())
    assert {v for row in tensor[0][0] for v in row} == {round(0.114 * 40 / 255, 4)}
    assert predicted(page)["answer"] == ["Answer: dark"]
    assert shot(page, "tryit-image-answer").is_file()
    (tmp_path / "notes.txt").write_text("not a picture")
    page.set_input_files(PICKER, str(tmp_path / "notes.txt"))
    error = page.locator("[data-field=image] .field-error")
    error.filter(has_text="notes.txt").wait_for()
    assert "notes.txt is not an image this browser can read" in error.inner_text()


def stats(page) -> dict:
    return page.evaluate(
        "Object.fromEntries([...document.querySelectorAll('[data-stat]')]"
        ".map(e => [e.dataset.stat, e.textContent]))"
    )


def test_inline_feedback_on_the_answer_updates_the_counts_without_a_reload(page):
    page.goto(IRIS)
    predicted(page)
    before = stats(page)
    page.evaluate("window.notReloaded = true")
    feedback = page.locator("#try-feedback")
    feedback.get_by_role("button", name="Wrong").click()
    feedback.locator("#try-feedback-status").filter(has_text="Thank you").wait_for()
    expect(page.locator("[data-stat=feedback-count]")).not_to_have_text(before["feedback-count"])
    after = stats(page)
    assert int(after["feedback-count"]) == int(before["feedback-count"]) + 1
    wrong = int(re.search(r"(\d+) wrong", after["feedback-judged"])[1])
    assert wrong == int(re.search(r"(\d+) wrong", before["feedback-judged"])[1]) + 1
    assert feedback.get_by_role("button", name="Wrong").get_attribute("aria-pressed") == "true"
    feedback.get_by_label("The right label").select_option("versicolor")
    feedback.get_by_label("4", exact=True).check()
    feedback.get_by_label("Comment").fill("the petals say versicolor")
    feedback.get_by_role("button", name="Send feedback").click()
    expect(page.locator("[data-stat=ratings]")).not_to_have_text(after["ratings"])
    final = stats(page)
    assert final["feedback-count"] == after["feedback-count"]  # the same feedback, completed
    assert (
        int(final["ratings"].split(", ")[1].split()[0]) == int(after["ratings"].split(", ")[1].split()[0]) + 1
    )
    assert re.fullmatch(r"\d\.\d\d", final["mean-rating"])
    assert page.evaluate("window.notReloaded") is True
    assert re.fullmatch(
        r"Thank you: feedback #\d+ was recorded\.", feedback.locator("#try-feedback-status").inner_text()
    )


def test_signed_in_the_prediction_and_its_feedback_carry_the_csrf_header(page, hub_server):
    page.goto(f"/sign-in?next={IRIS}")
    page.get_by_label("Token").fill(hub_server.token)
    page.get_by_role("button", name="Sign in").click()
    page.wait_for_url(re.compile(r"/models/iris-onnx$"))
    assert page.locator("#signed-in").count() == 1
    with page.expect_request(lambda r: "/predict" in r.url) as sent:
        page.locator(PREDICT).click()
    assert sent.value.headers["x-csrf-token"] == page.locator("meta[name=csrf-token]").get_attribute(
        "content"
    )
    page.locator("#try-status").filter(has_text="Prediction").wait_for()
    page.locator("#try-feedback").get_by_role("button", name="Right").click()
    status = page.locator("#try-feedback-status")
    status.filter(has_text="Thank you").wait_for()
    assert re.fullmatch(r"Thank you: feedback #\d+ was recorded\.", status.inner_text())


def test_the_feedback_form_works_with_javascript_disabled(browser, hub_server):
    context = browser.new_context(base_url=hub_server.url, java_script_enabled=False)
    try:
        tab = context.new_page()
        tab.goto(IRIS)
        assert tab.locator("html[data-js]").count() == 0  # hub.js did not run
        assert tab.locator("#try-feedback").is_hidden()  # the inline form waits for an answer
        form = tab.locator("#feedback-form")
        form.get_by_label("No", exact=True).check()
        form.get_by_label("Right label").select_option("virginica")
        form.get_by_label("5", exact=True).check()
        form.get_by_label("Comment").fill("sent without JavaScript")
        form.get_by_role("button", name="Send feedback").click()
        tab.wait_for_url(re.compile(r"/models/iris-onnx\?version=1\.0\.0&feedback=\d+#feedback$"))
        thanks = tab.locator("#feedback .flash").inner_text()
        assert re.fullmatch(r"Thank you: feedback #\d+ was recorded\.", thanks)
    finally:
        context.close()


LABELLED = """() => [...document.querySelectorAll(
  '#try input:not([type=hidden]), #try textarea, #try select, #try button')]
  .filter(e => !e.closest('[hidden]'))
  .filter(e => !(e.labels && e.labels.length) && !e.getAttribute('aria-label'))
  .filter(e => !(e.tagName === 'BUTTON' && e.textContent.trim()))
  .map(e => e.outerHTML.slice(0, 120))"""


def test_every_try_it_control_is_labelled_and_tab_reaches_each_in_order(page, shades):
    page.goto(shades)
    predicted(page)  # the answer's feedback form is shown too
    assert page.evaluate(LABELLED) == []
    page.get_by_role("button", name="Example 1").focus()
    reached = []
    for _ in range(40):
        page.keyboard.press("Tab")
        reached.append(
            page.evaluate("document.activeElement.id || document.activeElement.textContent.trim()")
        )
        if reached[-1] == "Send feedback":
            break
    controls = page.eval_on_selector_all("#try-it input, #try-it textarea", "es => es.map(e => e.id)")
    assert sorted(controls) == ["try-in-0", "try-in-1", "try-in-1-file"]  # bias, the image's file and JSON
    fields = [
        r for r in reached if r.startswith("try-in-") or r in ("Predict", "Right", "Wrong", "Send feedback")
    ]
    assert fields[:4] == [*controls, "Predict"], reached
    assert fields[4:] == ["Right", "Wrong", "Send feedback"], reached
    assert "try-feedback-label" in reached and "try-feedback-comment" in reached


ANSWERS = """() => [
  describe({y: [[2.0, 4.0]]}, []),
  describe({label: [1], probabilities: [[0.2, 0.7, 0.1]]}, ['a', 'b', 'c']),
  describe({logits: [[2.0, -1.0, 0.5]]}, ['a', 'b', 'c']),
  describe({scores: [[0.1, 0.9], [0.8, 0.2]]}, []),
  describe({label: ['positive']}, []),
  describe({probabilities: [[0.1, 0.1, 0.1, 0.1, 0.1, 0.2, 0.3]]}, []).map(row => row.top.length),
]"""


def test_the_answer_names_classes_only_for_classifiers(page):
    page.goto(IRIS)  # hub.js's functions, run on outputs of other shapes
    regression, classifier, logits, two_rows, text, seven = page.evaluate(ANSWERS)
    assert regression == []  # no labels and no scores: the raw JSON is the answer
    assert classifier == [
        {"name": "b", "probabilities": True, "top": [
            {"name": "b", "score": 0.7}, {"name": "a", "score": 0.2}, {"name": "c", "score": 0.1},
        ]},
    ]  # fmt: skip
    assert [(r["name"], r["probabilities"], r["top"][0]["name"]) for r in logits] == [("a", False, "a")]
    assert [r["name"] for r in two_rows] == ["class 1", "class 0"]
    assert text == [{"name": "positive", "top": [], "probabilities": False}]
    assert seven == [5]
