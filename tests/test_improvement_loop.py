"""The improvement loop of issue 13, end to end, as a user drives it: a real hub (`aid serve`) on SQLite
and on PostgreSQL, the bundled example `wine-python` served by a real model server, the `aid` CLI and
the JSON API over HTTP.

Traffic on 1.0.0 -> labels from the review queue -> a labelled snapshot exported (`aid dataset export`)
-> 1.1.0 trained on it by a script (sklearn), `trained_on:` naming the snapshot and `parent: 1.0.0`,
published and deployed -> shadowed at share 1.0 -> compared (`aid compare`: counts, agreement and
accuracy, checked against the answers worked out here) -> a 90/10 canary -> promoted -> rolled back.
"""

from __future__ import annotations

import csv
import hashlib
import json
import shutil
import subprocess
import sys
import time
from pathlib import Path

import httpx
import numpy as np
import pytest
import yaml
from sklearn.datasets import load_wine

from tests.hubserver import REPO, HubProcess, wait_for
from vocab.weights import bucket

NAME = "wine-python"
THRESHOLD = 0.9
# Reviewers see every call the model is under 90% sure of: the default measure (a margin under 0.2)
# finds none of these calls doubtful, and its cap of 5 items per minute of calls would choose among them.
RULES = {"measure": "max_probability", "threshold": THRESHOLD, "per_minute": 1000}
EVERY_S, SETTLE_S = 1, 2  # the review queue's selection pass: every second, on calls 2 s old
LABELS = ["class_0", "class_1", "class_2"]
# The script a researcher would write: fit on the snapshot's labelled rows, write the example's weights.
TRAIN = """
import csv, json, sys
import numpy as np
from sklearn.linear_model import LogisticRegression
from sklearn.preprocessing import StandardScaler

snapshot, out = sys.argv[1], sys.argv[2]
with open(snapshot, newline="") as f:
    rows = [r for r in csv.DictReader(f) if r["feedback.label"]]
x = np.array([[float(r[f"features.{i}"]) for i in range(13)] for r in rows])
y = np.array([["class_0", "class_1", "class_2"].index(r["feedback.label"]) for r in rows])
scaler = StandardScaler().fit(x)
model = LogisticRegression(C=0.05, max_iter=1000).fit(scaler.transform(x), y)
weights = {"mean": scaler.mean_.tolist(), "scale": scaler.scale_.tolist(), "coef": model.coef_.tolist(),
           "intercept": model.intercept_.tolist()}
Path = __import__("pathlib").Path
Path(out).write_text(json.dumps(weights))
print(len(rows))
"""


@pytest.fixture(scope="module")
def hub(tmp_path_factory, module_database_url):
    """`aid serve` on the module's database, wine-python 1.0.0 serving as production."""
    root = tmp_path_factory.mktemp("loop")
    settings = {
        "AIDHUB_DATABASE_URL": module_database_url,
        "AIDHUB_RATE_FEEDBACK": "0",  # quick reviewers
        "AIDHUB_REVIEW_EVERY": str(EVERY_S),  # the review queue's selection pass, every second
        "AIDHUB_REVIEW_SETTLE": str(SETTLE_S),
        "AIDHUB_DRIFT_EVERY": "0",  # no drift run: no call is queued for drift
    }
    server = HubProcess(root / "home", workers=1, extra_env=settings).start()
    done = server.aid("publish", str(REPO / "examples" / NAME), "--deploy")
    assert done.returncode == 0, done.stdout + done.stderr + server.output()
    assert server.aid("alias", NAME, "production", "1.0.0").returncode == 0
    rules = httpx.put(f"{server.url}/api/v1/models/{NAME}/review/rules", json=RULES, headers=server.headers)
    assert rules.status_code == 200, rules.text
    yield server
    for version in ("1.0.0", "1.1.0"):
        server.aid("undeploy", f"{NAME}@{version}")
    server.stop()


@pytest.fixture(scope="module")
def http(hub):
    with httpx.Client(base_url=hub.url, headers=hub.headers, timeout=30) as client:
        yield client


def predict(http, row, client: str = "") -> dict:
    headers = {"X-Aidhub-Client": client} if client else {}
    reply = http.post(
        f"/api/v1/models/{NAME}/predict", json={"inputs": {"features": [list(row)]}}, headers=headers
    )
    assert reply.status_code == 200, reply.text
    return reply.json()


def label_from_review_queue(http, name: str, truth: dict[str, str], expected: dict[str, set]) -> int:
    """A reviewer labels what the queue offers with its right answer (`truth`: prediction id -> label),
    once the selection pass has judged every call; the users give feedback on the rest. The queue must
    offer exactly the calls of `expected` (reason -> prediction ids). How many it offered."""
    time.sleep(SETTLE_S + 2 * EVERY_S + 1)  # every call settled and judged
    items = http.get(f"/api/v1/models/{name}/review").json()["items"]
    offered = {reason: {i["prediction_id"] for i in items if i["reason"] == reason} for reason in expected}
    assert (offered, len(items)) == (expected, sum(map(len, expected.values()))), items
    for item in items:
        body = {"label": truth[item["prediction_id"]]}
        reply = http.post(f"/api/v1/models/{name}/review/{item['id']}", json=body)
        assert reply.status_code == 200, reply.text
        assert reply.json()["feedback"]["label"] == body["label"]
    assert http.get(f"/api/v1/models/{name}/review").json()["items"] == []
    reviewed = {i["prediction_id"] for i in items}
    for prediction_id, label in truth.items():
        if prediction_id not in reviewed:
            reply = http.post(f"/api/v1/predictions/{prediction_id}/feedback", json={"label": label})
            assert reply.status_code == 201, reply.text
    return len(items)


def doubtful(calls: list[dict], besides: set = frozenset()) -> set[str]:
    """The calls the review queue finds doubtful by the loop's rule (the top probability under
    THRESHOLD), leaving out those queued for another reason."""
    return {c["id"] for c in calls if max(c["outputs"]["probabilities"][0]) < THRESHOLD} - besides


def export_snapshot(hub, folder: Path) -> tuple[str, Path]:
    """`aid dataset export --labelled-only` as CSV; the snapshot's digest and file."""
    target = folder / "snapshot.csv"
    done = hub.aid(
        "dataset", "export", f"{NAME}@1.0.0", "--labelled-only", "--format", "csv", "-o", str(target)
    )
    assert done.returncode == 0, done.stderr
    digest = done.stdout.splitlines()[-1].split("'aid dataset pull ")[1].rstrip("'.")
    assert digest == "sha256:" + hashlib.sha256(target.read_bytes()).hexdigest()
    return digest, target


def train_new_version(snapshot: Path, digest: str, folder: Path) -> tuple[Path, dict]:
    """1.1.0: the example with weights fitted by TRAIN on the snapshot; its folder and weights."""
    package = folder / "wine-1.1.0"
    shutil.copytree(REPO / "examples" / NAME, package)
    (folder / "train.py").write_text(TRAIN)
    command = [sys.executable, str(folder / "train.py"), str(snapshot), str(package / "weights.json")]
    done = subprocess.run(command, capture_output=True, text=True, timeout=120)
    assert (done.returncode, done.stdout) == (0, "89\n"), done.stderr
    manifest = yaml.safe_load((package / "aid.yaml").read_text())
    manifest |= {"version": "1.1.0", "parent": "1.0.0", "trained_on": [digest]}
    (package / "aid.yaml").write_text(yaml.safe_dump(manifest, sort_keys=False))
    return package, json.loads((package / "weights.json").read_text())


def answers_of(weights: dict, rows: np.ndarray) -> list[int]:
    """The class 1.1.0 gives each row, worked out here as examples/wine-python/predict.py does."""
    w = {k: np.array(v) for k, v in weights.items()}
    return (((rows - w["mean"]) / w["scale"]) @ w["coef"].T + w["intercept"]).argmax(axis=1).tolist()


def keys(canary: bool, count: int) -> list[str]:
    """Client keys that a 90/10 split sends to its canary (buckets 90-99), or to its base."""
    return [k for k in (f"client-{i}" for i in range(100_000)) if (bucket(k) >= 90) == canary][:count]


def test_the_improvement_loop(hub, http, tmp_path):
    wine = load_wine()
    first, second = slice(0, None, 2), slice(1, None, 2)  # 89 rows each

    # Traffic on 1.0.0, labelled by reviewers, exported as a snapshot.
    calls = [predict(http, row) for row in wine.data[first]]
    assert {c["version"] for c in calls} == {"1.0.0"}
    truth = {c["id"]: LABELS[t] for c, t in zip(calls, wine.target[first], strict=True)}
    assert label_from_review_queue(http, NAME, truth, {"low_confidence": doubtful(calls)}) >= 1
    digest, snapshot = export_snapshot(hub, tmp_path)
    with snapshot.open(newline="") as f:
        rows = list(csv.DictReader(f))
    assert sorted(r["prediction_id"] for r in rows) == sorted(truth)
    assert all(r["feedback.label"] == truth[r["prediction_id"]] for r in rows)

    # 1.1.0, trained on the snapshot by a script, published with its lineage and deployed.
    package, weights = train_new_version(snapshot, digest, tmp_path)
    done = hub.aid("publish", str(package), "--deploy")
    assert done.returncode == 0, done.stdout + done.stderr + hub.output()
    lineage = http.get(f"/api/v1/models/{NAME}/versions/1.1.0").json()
    assert (lineage["parent"], [s["digest"] for s in lineage["trained_on"]]) == ("1.0.0", [digest])
    assert (lineage["trained_on"][0]["rows"], lineage["trained_on"][0]["labels"]) == (89, 89)

    # Shadowed on every call of new traffic, which is labelled too, then compared.
    compare_in_shadow(hub, http, wine.data[second], wine.target[second], weights)

    # A 90/10 canary, promoted, rolled back.
    canary_promote_rollback(hub, http, wine.data[0])


def compare_in_shadow(hub, http, rows: np.ndarray, targets: np.ndarray, weights: dict) -> None:
    started = hub.aid("shadow", NAME, "1.1.0", "--share", "1.0")
    assert started.returncode == 0, started.stderr
    calls = [predict(http, row) for row in rows]
    assert {c["version"] for c in calls} == {"1.0.0"}  # the shadow's answers are never returned
    wait_for(lambda: http.get(f"/api/v1/models/{NAME}/shadow").json()["shadow"]["copied"] == 89, 30, "copies")
    truth = {c["id"]: LABELS[t] for c, t in zip(calls, targets, strict=True)}
    live, shadow = [c["outputs"]["label"][0] for c in calls], answers_of(weights, rows)
    disagree = {c["id"] for c, a, b in zip(calls, live, shadow, strict=True) if a != b}
    expected = {"disagreement": disagree, "low_confidence": doubtful(calls, besides=disagree)}
    assert label_from_review_queue(http, NAME, truth, expected) >= 1
    done = hub.aid("compare", NAME, "1.0.0", "1.1.0", "--window", "all", "--json")
    assert done.returncode == 0, done.stderr
    figures = json.loads(done.stdout)
    assert (figures["pairs"], figures["compared_labels"]) == (89, 89)
    assert figures["agreement"] == pytest.approx(np.mean(np.array(live) == shadow), abs=1e-4)
    sides = figures["sides"]
    assert [(s["version"], s["calls"], s["shadow"], s["errors"], s["feedback"]) for s in sides] == [
        ("1.0.0", 89, 0, 0, 89), ("1.1.0", 89, 89, 0, 89),
    ]  # fmt: skip
    assert sides[0]["accuracy"] == pytest.approx(np.mean(np.array(live) == targets), abs=1e-4)
    assert sides[1]["accuracy"] == pytest.approx(np.mean(np.array(shadow) == targets), abs=1e-4)
    assert hub.aid("shadow", NAME, "--off").returncode == 0


def canary_promote_rollback(hub, http, row) -> None:
    split = hub.aid("alias", NAME, "production", "1.0.0=90,1.1.0=10")
    assert (split.returncode, split.stdout) == (0, f"{NAME}@production -> 1.0.0=90,1.1.0=10\n"), split.stderr
    base, canary = keys(False, 20), keys(True, 10)
    assert {predict(http, row, k)["version"] for k in base} == {"1.0.0"}
    assert {predict(http, row, k)["version"] for k in canary} == {"1.1.0"}
    promoted = hub.aid("promote", NAME, "1.1.0")
    assert (promoted.returncode, promoted.stdout) == (0, f"{NAME}@production -> 1.1.0\n"), promoted.stderr
    assert {predict(http, row, k)["version"] for k in base + canary} == {"1.1.0"}
    back = hub.aid("rollback", NAME)
    assert (back.returncode, back.stdout) == (0, f"{NAME}@production -> 1.0.0=90,1.1.0=10\n"), back.stderr
    assert {predict(http, row, k)["version"] for k in base} == {"1.0.0"}
    assert {predict(http, row, k)["version"] for k in canary} == {"1.1.0"}
    changes = http.get(f"/api/v1/models/{NAME}/aliases").json()["changes"]
    assert [(c["before"], c["after"], c["by"]) for c in reversed(changes)] == [
        (None, "1.0.0", "alias"), ("1.0.0", "1.0.0=90,1.1.0=10", "alias"),
        ("1.0.0=90,1.1.0=10", "1.1.0", "promote"), ("1.1.0", "1.0.0=90,1.1.0=10", "rollback"),
    ]  # fmt: skip
