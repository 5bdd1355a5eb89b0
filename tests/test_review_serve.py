"""The review queue over real model servers (the process runner, shared test caches), one hub per
backend (SQLite, then PostgreSQL): examples/iris-onnx 1.0.0 serves, and a python 1.1.0 of it, which
calls every flower with petals over 4.5 cm virginica, shadows it at share 1.0. Real answers (the ONNX
model's int64 label and float32 probabilities, as its server returns them) are judged; a reviewer's
label then counts for both versions in the comparison on the same inputs."""

from __future__ import annotations

import shutil
from datetime import timedelta

import pytest
import yaml

from monitor.reviews import ReviewItem
from tests.browser import build_examples
from tests.conftest import admin_client
from tests.hubserver import REPO, wait_for
from tests.packages import archive
from tests.test_canary import wait_for_build
from vocab.states import BuildStatus
from vocab.times import utcnow

SHADOW = """class Model:
    def setup(self):
        pass

    def predict(self, features):
        tall = [float(row[2]) > 4.5 for row in features]
        return {"label": [2 if t else 0 for t in tall],
                "probabilities": [[0.05, 0.05, 0.9] if t else [0.9, 0.05, 0.05] for t in tall]}
"""
SETOSA, VIRGINICA = [5.1, 3.8, 1.6, 0.2], [7.2, 3.6, 6.1, 2.5]  # the ONNX model is sure of both
BORDER = [6.0, 2.7, 5.0, 1.6]  # versicolor 0.53, virginica 0.47; the shadow: virginica
CLOSE = [6.2, 2.8, 4.8, 1.7]  # virginica 0.52, versicolor 0.48; the shadow agrees


def shadow_package(root):
    folder = root / "iris-python"
    folder.mkdir()
    manifest = yaml.safe_load((REPO / "examples" / "iris-onnx" / "aid.yaml").read_text())
    manifest.update(version="1.1.0", framework="python", entrypoint="predict.py:Model")
    for key in ("artifact", "examples", "reference_data"):
        manifest.pop(key)
    (folder / "aid.yaml").write_text(yaml.safe_dump(manifest))
    (folder / "predict.py").write_text(SHADOW)
    (folder / "README.md").write_text("# iris, by petal length\n")
    return folder


@pytest.fixture(scope="module")
def hub(open_hub, module_database_url, tmp_path_factory):
    build_examples(["iris-onnx"])
    root = tmp_path_factory.mktemp("review-serve")
    shutil.copytree(REPO / "examples" / "iris-onnx", root / "iris-onnx")
    hub = open_hub(root / "home", module_database_url)
    hub.publish(archive(root / "iris-onnx"))
    hub.publish(archive(shadow_package(root)))
    for version in ("1.0.0", "1.1.0"):
        build = wait_for_build(hub, hub.deploy("iris-onnx", version)["build"]["id"])
        assert build["status"] == BuildStatus.SUCCEEDED, build["log"][-3000:]
    hub.set_alias("iris-onnx", "production", "1.0.0")
    hub.set_shadow("iris-onnx", "1.1.0", 1.0)
    yield hub
    for version in ("1.0.0", "1.1.0"):
        hub.undeploy("iris-onnx", version)
    hub.close()


def test_real_answers_are_judged_and_a_label_counts_for_both_versions(hub):
    ids = {}
    for name, features in (
        ("setosa", SETOSA),
        ("virginica", VIRGINICA),
        ("border", BORDER),
        ("close", CLOSE),
    ):
        ids[name] = hub.predict("iris-onnx", None, {"features": [features]})["id"]
    wait_for(
        lambda: hub.compare_versions("iris-onnx", "1.0.0", "1.1.0")["pairs"] == 4, 30, "the shadow calls"
    )
    hub.select_for_review(now=utcnow() + timedelta(seconds=30))  # past the settling time
    items = {i.prediction_id: i for i in ReviewItem.select()}
    assert set(items) == {ids["border"], ids["close"]}  # the sure ones, agreed on, are left out
    border, close = items[ids["border"]], items[ids["close"]]
    assert (border.reason, border.answer, border.score) == ("disagreement", "versicolor", 1.0)
    assert border.detail == "1.1.0 (shadow) answered virginica; margin 0.06"
    assert (close.reason, close.answer, close.detail) == ("low_confidence", "virginica", "margin 0.04")
    client = admin_client(create_app(hub))
    reply = client.post(f"/api/v1/models/iris-onnx/review/{border.id}", json={"label": "virginica"})
    assert reply.status_code == 200 and reply.get_json()["feedback"]["correct"] is False
    sides = hub.compare_versions("iris-onnx", "1.0.0", "1.1.0")["sides"]
    assert [(s["feedback"], s["accuracy"]) for s in sides] == [(1, 0.0), (1, 1.0)]  # the shadow was right


def create_app(hub):
    from web.app import create_app as make

    return make(hub=hub)
