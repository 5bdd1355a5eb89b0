"""Batching on vs off through the hub (benchmarks/batching.py): the heavier model published twice on
one hub (`aid serve`, process runner), as `heavy-onnx` (batching off, the manifest's default) and as
`heavy-onnx-batched` (the same package with `batching:` on), loaded by wrk with the JSON body a user
sends: the native route's `{"inputs": ...}` and the v2 route's flat `data`. The hub checks the JSON
with numpy and forwards raw tensor bytes to the server's tensor route (hub/serving.py), where the
batcher joins concurrent calls (runners/flavors/batching.py)."""

from __future__ import annotations

import shutil
from pathlib import Path

import httpx

from benchmarks.load import post_load
from benchmarks.peers.models import Model

BATCHED_SUFFIX = "-batched"
BATCHING_LINE = "batching: {enabled: true, max_batch_size: 32, max_latency_ms: 10}\n"


def batched_copy(model: Model, folder: Path) -> Path:
    """The model's package under another name, with batching on (the only other difference)."""
    name = model.name + BATCHED_SUFFIX
    copy = folder / name
    shutil.copytree(model.folder, copy)
    manifest = copy / "aid.yaml"
    text = manifest.read_text()
    if f"name: {model.name}\n" not in text or "batching:" in text:
        raise RuntimeError(f"{manifest}: expected 'name: {model.name}' and no 'batching:' line")
    manifest.write_text(text.replace(f"name: {model.name}\n", f"name: {name}\n", 1) + BATCHING_LINE)
    return copy


def hub_targets(url: str, model: Model) -> dict:
    """{(route, batching): (url, JSON body)} for the two published copies."""
    names = {"off": model.name, "on": model.name + BATCHED_SUFFIX}
    targets = {}
    for mode, name in names.items():
        targets["hub JSON", mode] = (f"{url}/api/v1/models/{name}/predict", model.native)
        targets["hub v2 JSON", mode] = (f"{url}/v2/models/{name}/infer", model.v2)
    return targets


def check(targets: dict) -> None:
    """Every target answers 200, and batching does not change the native answer."""
    labels = {}
    for (route, mode), (url, body) in targets.items():
        reply = httpx.post(url, json=body, timeout=60)
        if reply.status_code != 200:
            raise RuntimeError(f"{route}, batching {mode}: {reply.status_code} {reply.text[:300]}")
        if route == "hub JSON":
            labels[mode] = reply.json()["outputs"]["label"]
    if labels["on"] != labels["off"]:
        raise RuntimeError(f"batching changed the hub's answer: {labels}")


def hub_loads(targets: dict, concurrency: int) -> dict:
    """{key: a function(seconds) -> post_load's figures}."""
    return {
        key: (lambda s, url=url, body=body: post_load(url, body, s, concurrency))
        for key, (url, body) in targets.items()
    }
