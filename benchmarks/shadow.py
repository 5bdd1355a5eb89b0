"""The caller's latency with a shadow version at share 1.0 vs none (target: added p50 <= 0.5 ms).

One hub (`aid serve`, process runner) serves iris-onnx 1.0.0 (production) and 1.0.1, the same model;
wrk loads the predict route at one connection (the caller's own latency) and at eight, with no shadow
and with 1.0.1 shadowing every call, in turns (so that drift in the shared machine's load hits both
alike); each figure is the mean of the rounds' p50. With the shadow: how many copies were made,
failed and dropped (the queue's bound) in the hub process. `python -m benchmarks.shadow` (~1.5 min).
"""

from __future__ import annotations

import json
import shutil
import statistics
import tempfile
from pathlib import Path

import httpx

from benchmarks.load import post_load
from benchmarks.serving import deployed_hub, row
from tests.hubserver import REPO

MODEL = "iris-onnx"
SECONDS = 5
ROUNDS = 2
CONCURRENCY = (1, 8)


def _candidate() -> Path:
    """iris-onnx as version 1.0.1: the same files, so that the two agree."""
    folder = Path(tempfile.mkdtemp(prefix="aidhub-shadow-")) / MODEL
    shutil.copytree(REPO / "examples" / MODEL, folder)
    manifest = folder / "aid.yaml"
    manifest.write_text(manifest.read_text().replace("version: 1.0.0", "version: 1.0.1", 1))
    return folder


def _set(hub, shadowed: bool) -> None:
    args = ("shadow", MODEL, "1.0.1", "--share", "1.0") if shadowed else ("shadow", MODEL, "--off")
    done = hub.aid(*args)
    assert done.returncode == 0 or "has no shadow" in done.stderr, done.stderr


def _p50s(hub, concurrency: int) -> dict[bool, float]:
    url = f"{hub.url}/api/v1/models/{MODEL}/predict"
    body = {"inputs": json.loads((REPO / "examples" / MODEL / "examples.json").read_text())[0]["inputs"]}
    found: dict[bool, list[float]] = {False: [], True: []}
    for _ in range(ROUNDS):
        for shadowed in (False, True):
            _set(hub, shadowed)
            result = post_load(url, body, SECONDS, concurrency)
            assert result["errors"] == 0, result
            found[shadowed].append(result["p50_ms"])
    _set(hub, False)
    return {shadowed: statistics.fmean(values) for shadowed, values in found.items()}


def run() -> list[dict]:
    with deployed_hub(packages=[REPO / "examples" / MODEL, _candidate()]) as hub:
        assert hub.aid("alias", MODEL, "production", "1.0.0").returncode == 0
        post_load(f"{hub.url}/api/v1/models/{MODEL}/predict", {"inputs": {"features": [[1, 2, 3, 4]]}}, 2)
        rows = []
        for concurrency in CONCURRENCY:
            p50 = _p50s(hub, concurrency)
            at = f"{concurrency} connection{'s' if concurrency > 1 else ''}"
            rows += [
                row(f"caller p50, no shadow, {at}", round(p50[False], 3), "ms"),
                row(f"caller p50, shadow at share 1.0, {at}", round(p50[True], 3), "ms"),
                row(f"added p50 with a shadow, {at}", round(p50[True] - p50[False], 3), "ms", "<= 0.5"),
            ]
        _set(hub, True)  # the counts of the process, since it started
        counts = httpx.get(f"{hub.url}/api/v1/models/{MODEL}/shadow", headers=hub.headers).json()["shadow"]
        _set(hub, False)
    copies = {k: counts[k] for k in ("copied", "failed", "dropped")}
    return [
        *rows,
        row("shadow copies made / failed / dropped", "{copied} / {failed} / {dropped}".format(**copies), ""),
    ]


if __name__ == "__main__":
    for line in run():
        print(line)
