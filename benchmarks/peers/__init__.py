"""The hub against the servers a user would pick instead, on the same models, in one run.

Each model (iris-onnx; heavy-onnx, an MLP on 3x32x32 images; digits-torch, TorchScript) is served by
(a) the hub's native route, (b) the hub's v2 route, as JSON and with binary tensors (benchmarks/peers/
rawload.py), (c) the deployment's BentoML server called directly, (d) MLServer 1.7 with a custom
runtime, (e) a BentoML service written by hand from its docs.
wrk loads each at concurrency 1, 16 and 64; the servers take turns within every round (the order
rotates from round to round) so the shared machine's drift hits all alike; rounds are averaged.

Settings: AIDHUB_PEERS_SECONDS (per load, default 10), AIDHUB_PEERS_ROUNDS (default 3),
AIDHUB_PEERS_MODELS (comma-separated, default all), AIDHUB_BENCH_OUT (folder of peers.png, default
docs/images). Needs wrk, matplotlib and MLServer's environment: scripts/bench-deps.sh, run first.
"""

from __future__ import annotations

import os
import platform
import shutil
import tempfile
from collections import defaultdict
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager
from pathlib import Path

import httpx

from benchmarks.load import post_load
from benchmarks.peers import report, servers
from benchmarks.peers.models import Model, chosen
from benchmarks.peers.rawload import Raw, post_raw
from benchmarks.serving import deployed_hub, row
from tests.hubserver import REPO, HubProcess

SECONDS = int(os.environ.get("AIDHUB_PEERS_SECONDS") or 10)
ROUNDS = int(os.environ.get("AIDHUB_PEERS_ROUNDS") or 3)


def _hub_targets(hub: HubProcess, model: Model) -> dict:
    version = httpx.get(f"{hub.url}/api/v1/models/{model.name}/versions/1.0.0").json()
    return {
        "hub native": (f"{hub.url}/api/v1/models/{model.name}/predict", model.native),
        "hub v2": (f"{hub.url}/v2/models/{model.name}/infer", model.v2),
        "hub v2 binary": (f"{hub.url}/v2/models/{model.name}/infer", model.v2_binary),
        "BentoML direct": (f"{version['deployment']['url']}/predict", model.native),
    }


@contextmanager
def serving(models: list[Model], folder: Path) -> Iterator[dict]:
    """Every server up: {model name: {server: (url, body)}}; all stopped after."""
    with ExitStack() as stack:
        hub = stack.enter_context(deployed_hub(packages=[m.folder for m in models]))
        (folder / "mlserver").mkdir()
        peers = {"mlserver": stack.enter_context(servers.mlserver(folder / "mlserver", models))}
        peers |= {m.name: stack.enter_context(servers.by_hand(folder, m)) for m in models}
        for server in peers.values():
            server.wait()
        yield {
            m.name: {
                **_hub_targets(hub, m),
                "MLServer 1.7": (f"{peers['mlserver'].url}/v2/models/{m.name}/infer", m.v2),
                "BentoML by hand": (f"{peers[m.name].url}/predict", m.by_hand),
            }
            for m in models
        }


def _check(targets: dict) -> None:
    """One call to each (a wrong body fails here, not as a column of errors), then a short warm-up."""
    for model, by_server in targets.items():
        for server, (url, body) in by_server.items():
            if isinstance(body, Raw):
                reply = httpx.post(url, content=body.body, headers=body.headers, timeout=30)
            else:
                reply = httpx.post(url, json=body, timeout=30)
            if reply.status_code != 200:
                raise RuntimeError(f"{server} on {model}: {reply.status_code} {reply.text[:300]}")
            load(url, body, 2, concurrency=4)


def load(url: str, body, seconds: int, concurrency: int) -> dict:
    """wrk on `url` with a JSON `body` (a dict) or a Raw one."""
    if isinstance(body, Raw):
        return post_raw(url, body, seconds, concurrency)
    return post_load(url, body, seconds, concurrency)


def measure(targets: dict, rounds: int = ROUNDS, seconds: int = SECONDS) -> dict:
    """{(model, server, concurrency): the rounds' mean of rps, p50_ms, p99_ms, errors}."""
    runs = defaultdict(list)
    for turn in range(rounds):
        for model, by_server in targets.items():
            names = list(by_server)
            order = names[turn % len(names) :] + names[: turn % len(names)]
            for concurrency in report.CONCURRENCY:
                for server in order:
                    url, body = by_server[server]
                    runs[model, server, concurrency].append(load(url, body, seconds, concurrency))
    return {key: {k: sum(r[k] for r in rs) / len(rs) for k in rs[0]} for key, rs in runs.items()}


def _ratio_rows(models: list[str], results: dict) -> list[dict]:
    rows = []
    for model in models:
        hub16, peer16 = results[model, "hub native", 16], results[model, "MLServer 1.7", 16]
        direct1, hub1 = results[model, "BentoML direct", 1], results[model, "hub native", 1]
        direct16 = results[model, "BentoML direct", 16]
        rows += [
            row(f"{model}: hub native / MLServer, c=16", hub16["rps"] / peer16["rps"], "", ">= 1"),
            row(f"{model}: hub native p99, c=16", hub16["p99_ms"], "ms", "<= 30"),
            row(f"{model}: hub native / BentoML direct, c=16", hub16["rps"] / direct16["rps"], "", ">= 0.9"),
            row(f"{model}: added p50, c=1", hub1["p50_ms"] - direct1["p50_ms"], "ms", "<= 1"),
            row(f"{model}: added p50, c=16", hub16["p50_ms"] - direct16["p50_ms"], "ms", "<= 2"),
        ]
    errors = sum(r["errors"] for r in results.values())
    return [*rows, row("peers: errors, all loads", errors, "", "0")]


def _out() -> Path:
    return Path(os.environ.get("AIDHUB_BENCH_OUT") or REPO / "docs" / "images") / "peers.png"


def run() -> list[dict]:
    servers.install_deps()
    models = chosen(os.environ.get("AIDHUB_PEERS_MODELS", ""))
    names = [m.name for m in models]
    folder = Path(tempfile.mkdtemp(prefix="aidhub-peers-"))
    try:
        with serving(models, folder) as targets:
            _check(targets)
            results = measure(targets)
    except BaseException:
        print(f"peers: the servers' logs are in {folder}")
        raise
    shutil.rmtree(folder, ignore_errors=True)
    title = (
        f"{os.cpu_count()} cores, {platform.machine()}; wrk, {SECONDS} s per load, mean of {ROUNDS} round(s)"
    )
    print(report.table(names, results))
    print(f"plot: {report.plot(names, results, _out(), title)}")
    return _ratio_rows(names, results)
