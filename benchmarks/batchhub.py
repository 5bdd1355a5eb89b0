"""Batching on vs off through the hub (benchmarks/batching.py): the heavier model published twice on
a hub (`aid serve`, process runner), as `heavy-onnx` (batching off, the manifest's default) and as
`heavy-onnx-batched` (the same package with `batching:` on), loaded by wrk with the JSON body a user
sends: the native route's `{"inputs": ...}` and the v2 route's flat `data`. The hub checks the JSON
with numpy, joins concurrent calls to the batched copy (hub/batcher.py) and forwards raw tensor bytes
to the server's tensor route (hub/serving.py), which runs each joined call as one batch
(runners/flavors/batching.py). Two hubs: one web worker (the default on two cores) and two."""

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


def hub_targets(url: str, model: Model, workers: int) -> dict:
    """{(route, batching): (url, JSON body)} for the two published copies on a hub with `workers`
    web workers."""
    names = {"off": model.name, "on": model.name + BATCHED_SUFFIX}
    targets = {}
    for mode, name in names.items():
        targets[route_name("native", workers), mode] = (f"{url}/api/v1/models/{name}/predict", model.native)
        targets[route_name("v2", workers), mode] = (f"{url}/v2/models/{name}/infer", model.v2)
    return targets


def route_name(route: str, workers: int) -> str:
    return f"hub {route} JSON, {workers} web worker{'s' if workers > 1 else ''}"


def check(targets: dict) -> None:
    """Every target answers 200, and batching does not change the native answer."""
    labels = {}
    for (route, mode), (url, body) in targets.items():
        reply = httpx.post(url, json=body, timeout=60)
        if reply.status_code != 200:
            raise RuntimeError(f"{route}, batching {mode}: {reply.status_code} {reply.text[:300]}")
        if "native" in route:
            labels[route, mode] = reply.json()["outputs"]["label"]
    if len(set(map(str, labels.values()))) != 1:
        raise RuntimeError(f"batching changed the hub's answer: {labels}")


def hub_loads(targets: dict, concurrency: int) -> dict:
    """{key: a function(seconds) -> post_load's figures}."""
    return {
        key: (lambda s, url=url, body=body: post_load(url, body, s, concurrency))
        for key, (url, body) in targets.items()
    }
