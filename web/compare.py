"""The compare page: two versions (of one model, or two models of one task) side by side, their
scorecards over one window, their latest drift, and one input run through both; for two versions of
one model, how they did on the same inputs when one shadowed the other (agreement, difference).

`GET /compare?a=NAME@VERSION&b=NAME@VERSION&window=24h` shows them; the form under it POSTs an
input to the same URL, which runs it through both and shows the two answers (no script needed).
"""

from __future__ import annotations

import json
import time

from flask import Blueprint, render_template, request

from hub.errors import HubError, Invalid
from vocab.names import split_ref
from web import snippets
from web.auth import needs, principal
from web.context import get_hub
from web.pages import DEFAULT_WINDOW, WINDOWS, scorecard_over

blueprint = Blueprint("compare", __name__)

# (label, where in the scorecard, which way is better: 1 higher, -1 lower, 0 neither)
ROWS = (
    ("Requests", ("requests",), 0),
    ("Error rate", ("error_rate",), -1),
    ("Latency p50", ("latency_ms", "p50"), -1),
    ("Latency p95", ("latency_ms", "p95"), -1),
    ("Feedback", ("feedback", "count"), 0),
    ("Accuracy", ("feedback", "accuracy"), 1),
    ("Accuracy, 95% lower bound", ("feedback", "accuracy_low"), 1),
    ("Mean rating", ("feedback", "mean_rating"), 1),
    ("Drift share", ("drift", "share"), -1),
)


@blueprint.route("/compare", methods=["GET", "POST"])
@needs("read")
def compare():
    values = request.form if request.method == "POST" else request.args
    a, b = (values.get(k, "").strip() for k in ("a", "b"))
    window = values.get("window") or DEFAULT_WINDOW
    if not a:
        raise Invalid("Name the versions to compare: /compare?a=NAME@VERSION&b=NAME@VERSION.")
    first = _side(a, window)
    sides = [first, _side(b or _partner(first), window)]
    if request.method == "POST":
        get_hub().require(principal(), "predict")
        text = values.get("inputs", "")
        for side in sides:
            side["answer"] = _run(side, text)
    else:
        first = sides[0]["version"]
        text = json.dumps(snippets.sample_inputs(first["examples"], first["inputs"]))
    page = {"sides": sides, "rows": rows(sides), "inputs": text, "window": window,
            "windows": WINDOWS, "choices": _choices(sides), "shadow": _shadow(sides, window)}  # fmt: skip
    return render_template("compare.html", **page)


def _side(ref: str, window: str) -> dict:
    name, number = split_ref(ref)
    hub = get_hub()
    version = hub.version(name, number)
    card, _, _ = scorecard_over(name, version["version"], window)
    return {"name": name, "ref": f"{name}@{version['version']}", "version": version, "card": card}


def _run(side: dict, text: str) -> dict:
    """The side's answer to the inputs `text` (a JSON object), or the error it gave."""
    try:
        inputs = json.loads(text)
    except ValueError as e:
        return {"error": f'The inputs are not JSON ({e}); write an object such as {{"x": [[1.0]]}}.'}
    started = time.perf_counter()
    try:
        reply = get_hub().predict(side["name"], side["version"]["version"], inputs)
    except HubError as e:
        return {"error": " ".join([e.message, *e.errors]), "status": e.status}
    took = (time.perf_counter() - started) * 1000
    return {"outputs": json.dumps(reply["outputs"]), "id": reply["id"], "ms": round(took, 1)}


def rows(sides: list[dict]) -> list[dict]:
    """One row per figure: the two values and which side is better (None when neither, or unknown)."""
    out = []
    for label, path, better in ROWS:
        values = [_dig(side["card"], path) for side in sides]
        best = None
        if better and None not in values and values[0] != values[1]:
            best = 0 if (values[0] > values[1]) == (better > 0) else 1
        out.append({"label": label, "key": path[-1], "cells": values, "best": best})
    return out


def _shadow(sides: list[dict], window: str) -> dict | None:
    """The two versions on the same inputs (one answered live, the other in shadow: hub/shadow.py),
    when they are versions of one model and such calls exist; else None."""
    first, second = sides
    if first["name"] != second["name"] or first["ref"] == second["ref"]:
        return None
    numbers = (first["version"]["version"], second["version"]["version"])
    figures = get_hub().compare_versions(first["name"], *numbers, window)
    return figures if figures["pairs"] else None


def _dig(card: dict, path: tuple[str, ...]):
    value = card
    for key in path:
        value = value.get(key) if isinstance(value, dict) else None
    return value


def _partner(side: dict) -> str:
    """What a version is compared with when the page names one: the model's version before it, else
    the best-ranked version of another model of its task."""
    versions = [v["version"] for v in get_hub().model(side["name"])["versions"]]
    number = side["version"]["version"]
    others = [v for v in versions if v != number]
    if others:
        older = [v for v in others if versions.index(v) > versions.index(number)]
        return f"{side['name']}@{(older or others)[0]}"
    board = get_hub().leaderboard(side["version"]["task"])["versions"]
    rival = next((r for r in board if r["model"] != side["name"]), None)
    if rival is None:
        raise Invalid(f"{side['ref']} has nothing to be compared with: no other version, and no other "
                      "model of its task. Publish another, or name one with &b=NAME@VERSION.")  # fmt: skip
    return f"{rival['model']}@{rival['version']}"


def _choices(sides: list[dict]) -> list[str]:
    """What the pickers offer: every version of the models that solve the first side's task."""
    task = sides[0]["version"].get("task") or ""
    board = get_hub().leaderboard(task)["versions"] if task else []
    refs = [f"{r['model']}@{r['version']}" for r in board]
    return sorted(set(refs) | {s["ref"] for s in sides})
