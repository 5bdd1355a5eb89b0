"""The try-it form generated from a version's input schema (web/tryit.py), through real packages: the
iris example (a vector with reference data), the doubler and demo packages, the digits example's
schema (an image), python packages (scalars, text); and the form as the model page renders it.
tests/test_tryit_in_browser.py runs it in Chromium against deployed models."""

from __future__ import annotations

import json
from pathlib import Path

from registry.manifest import check_manifest, read_manifest
from tests.packages import archive, onnx_package, python_package
from tests.page_reading import Elements, get, text_of
from web import tryit

EXAMPLES = Path(__file__).resolve().parent.parent / "examples"


def form_of(hub, name: str) -> dict:
    version = hub.version(name)
    return tryit.form(version, hub.reference_columns(version["model"], version["version"]))


def test_iris_features_are_a_row_of_number_fields_named_by_its_reference_columns(hub):
    hub.publish(archive(EXAMPLES / "iris-onnx"))
    form = form_of(hub, "iris-onnx")
    [field] = form["fields"]
    assert (field["name"], field["kind"], field["batch"], field["step"]) == (
        "features",
        "vector",
        True,
        "any",
    )
    assert [p["label"] for p in field["parts"]] == [f"features.{i}" for i in range(4)]
    assert [p["value"] for p in field["parts"]] == ["5.1", "3.8", "1.6", "0.2"]  # the first example
    assert [e["label"] + e["note"] for e in form["examples"]] == [
        "Example 1", "Example 2", "Example 3", "Example 4 (row 1 of 3)",
    ]  # fmt: skip
    assert form["examples"][2]["values"] == {field["id"]: ["7.2", "3.6", "6.1", "2.5"]}


def test_vector_labels_fall_back_to_indexes_without_reference_data(hub, tmp_path):
    hub.publish(archive(onnx_package(tmp_path / "with", name="with-ref")))
    hub.publish(archive(onnx_package(tmp_path / "without", name="no-ref", reference_data=None)))
    labels = {
        name: [p["label"] for p in form_of(hub, name)["fields"][0]["parts"]]
        for name in ("with-ref", "no-ref")
    }
    assert labels == {"with-ref": ["x.0", "x.1"], "no-ref": ["x[0]", "x[1]"]}


def test_a_schema_without_examples_is_prefilled_with_zeros(publish, hub):
    publish(examples=[])
    form = form_of(hub, "demo-adder")
    assert [p["value"] for p in form["fields"][0]["parts"]] == ["0.0", "0.0"]
    assert form["examples"] == []


def test_digits_image_input_is_an_image_upload_for_torch_and_json_for_python():
    manifest, problems = check_manifest(read_manifest(EXAMPLES / "digits-torch"))
    assert problems == []
    version = {"framework": "torch", "inputs": manifest.inputs, "examples": None}
    [field] = tryit.form(version)["fields"]
    assert field["kind"] == "image" and field["batch"]
    assert field["image"] == {"layout": "NCHW", "channels": 1, "height": 8, "width": 8}
    assert json.loads(field["value"]) == [[[[0.0] * 8] * 8]]  # a zero image until one is uploaded
    [as_python] = tryit.form({**version, "framework": "python"})["fields"]
    assert as_python["kind"] == "json"


def test_kinds_follow_the_shape_and_dtype():
    kinds = {
        name: tryit.field(0, name, {"dtype": dtype, "shape": shape}, "onnx")["kind"]
        for name, dtype, shape in [
            ("scalar", "float32", []), ("one", "int64", [1]), ("per-row", "string", [-1]),
            ("row-of-one", "float32", [-1, 1]), ("vector", "int32", [-1, 32]), ("wide", "float32", [-1, 33]),
            ("dynamic", "float32", [-1, -1]), ("flags", "bool", [-1, 3]), ("nhwc", "float32", [1, 28, 28, 3]),
            ("not-an-image", "float32", [-1, 4, 8, 8]), ("ints", "uint8", [-1, 3, 8, 8]),
        ]
    }  # fmt: skip
    assert kinds == {
        "scalar": "scalar", "one": "scalar", "per-row": "scalar", "row-of-one": "scalar", "vector": "vector",
        "wide": "json", "dynamic": "json", "flags": "json", "nhwc": "image", "not-an-image": "json",
        "ints": "json",
    }  # fmt: skip
    nhwc = tryit.field(0, "x", {"dtype": "float32", "shape": [1, 28, 28, 3]}, "torch")
    assert nhwc["batch"] and nhwc["image"] == {"layout": "NHWC", "channels": 3, "height": 28, "width": 28}


def test_a_python_package_with_a_list_input_gets_one_number_per_row(hub, tmp_path):
    hub.publish(archive(python_package(tmp_path / "times", "times-two")))
    [field] = form_of(hub, "times-two")["fields"]
    assert (field["kind"], field["batch"], field["nest"], field["value"]) == ("scalar", True, 0, "1.0")


# --- the form as the model page renders it ------------------------------------------------------


def test_model_page_renders_the_fields_examples_and_inline_feedback(client, hub):
    hub.publish(archive(EXAMPLES / "iris-onnx"))
    page = get(client, "/models/iris-onnx")
    elements = Elements(page)
    [form] = elements.find("form", id="try-it")
    assert form["data-url"] == "/api/v1/models/iris-onnx/predict?version=1.0.0"
    assert json.loads(form["data-labels"]) == ["setosa", "versicolor", "virginica"]
    assert len(json.loads(form["data-examples"])) == 4
    parts = [a for tag, a in elements.tags if tag == "input" and "data-part" in a]
    assert [(p["id"], p["type"], p["value"]) for p in parts] == [
        ("try-in-0-0", "number", "5.1"), ("try-in-0-1", "number", "3.8"),
        ("try-in-0-2", "number", "1.6"), ("try-in-0-3", "number", "0.2"),
    ]  # fmt: skip
    ids = {a["id"] for _, a in elements.tags if "id" in a}
    for part in parts:  # each field is labelled, and described by its hint and its error
        assert elements.find("label", **{"for": part["id"]})
        assert set(part["aria-describedby"].split()) == {"try-in-0-hint", "try-in-0-error"} <= ids
    text = text_of(page)
    assert (
        "features features.0 features.1 features.2 features.3 float32, shape n × 4; sent as one row" in text
    )
    assert [b.get("data-example") for b in elements.find("button") if "data-example" in b] == [
        "0",
        "1",
        "2",
        "3",
    ]
    assert "Example 4 (row 1 of 3)" in text


def test_inline_feedback_form_offers_the_labels_and_posts_without_javascript(client, hub):
    hub.publish(archive(EXAMPLES / "iris-onnx"))
    elements = Elements(get(client, "/models/iris-onnx"))
    [inline] = elements.find("form", id="try-feedback")
    assert inline["action"] == "/models/iris-onnx/feedback" and inline["method"] == "post"
    assert inline["data-scorecard"] == "/api/v1/models/iris-onnx@1.0.0/scorecard?window=24h"
    assert [b["value"] for b in elements.find("button", name="correct")] == ["yes", "no"]
    labels = [o["value"] for o in elements.find("option")]
    assert labels.count("setosa") == 2  # the inline form and the feedback section's form
    sent = {
        "version": "1.0.0",
        "correct": "no",
        "label": "virginica",
        "rating": "4",
    }  # a bearer token: no CSRF
    reply = client.post("/models/iris-onnx/feedback", data={**sent, "comment": "looked like a virginica"})
    assert reply.status_code == 303 and reply.headers["Location"].endswith("&feedback=1#feedback")
    page = get(client, reply.headers["Location"])
    assert "Thank you: feedback #1 was recorded." in text_of(page)
    stats = {a["data-stat"] for _, a in Elements(page).tags if "data-stat" in a}
    assert {"feedback-count", "feedback-judged", "accuracy", "mean-rating", "ratings"} <= stats


def test_a_422_names_each_input_it_is_about(client, publish):
    publish()
    reply = client.post(
        "/api/v1/models/demo-adder/predict", json={"inputs": {"x": [[1.0, 2.0, 3.0]], "y": 1}}
    )
    assert reply.status_code == 422
    errors = reply.get_json()["errors"]
    assert [e.split(":")[0] for e in errors] == ["inputs.y", "inputs.x"]
    assert "inputs.x: expected float32 with shape [-1, 2], got shape [1, 3]" in errors
