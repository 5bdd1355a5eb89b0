"""Adaptive batching on vs off: the heavier model (benchmarks/peers/heavy.py, an ONNX MLP 3072-512-256-10
on 3x32x32 images) served by the generated BentoML service twice, the same but for `batching`, loaded
with wrk at concurrency 64 on both of its routes: JSON `POST /predict` and the binary tensor route the
hub uses (runners/flavors/tensorbody.py). The servers take turns within each round (the shared
machine's drift hits both alike) and the rounds are averaged. Besides throughput, each load reports
the server's CPU time per call, which holds where other work shares the machine.

Both run from the hub's own virtualenv (BentoML and onnxruntime), from folders written by
`runners.service.write_service_dir`: the exact service a deployment runs, with the workers and
threads it would get from the package's `resources.cpu` (1: one worker, one onnxruntime thread).

The same two configurations are also loaded through two hubs, with one web worker and with two
(benchmarks/batchhub.py: the model published twice, batching off and on), with the JSON bodies users
send, on the native and the v2 route; their CPU per call is the hub's with its model servers'.

Settings: AIDHUB_BATCHING_SECONDS (per load, default 10), AIDHUB_BATCHING_ROUNDS (default 2).
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import tempfile
from contextlib import ExitStack
from pathlib import Path

import httpx

from benchmarks import batchhub
from benchmarks.load import LUA, post_load, wrk_binary
from benchmarks.peers import servers
from benchmarks.peers.models import Model, heavier
from benchmarks.serving import deployed_hub, row
from registry.manifest import parse_manifest, read_manifest
from runners.base import ServeSpec
from runners.flavors import tensorbody
from runners.service import SERVICE_CLASS, SERVICE_MODULE, write_service_dir
from tests.postgres import _free_port

SECONDS = int(os.environ.get("AIDHUB_BATCHING_SECONDS") or 10)
ROUNDS = int(os.environ.get("AIDHUB_BATCHING_ROUNDS") or 2)
CONCURRENCY = 64
BATCHING_ON = {"enabled": True, "max_batch_size": 32, "max_latency_ms": 10}
# The binary route (runners/flavors/tensorbody.py): the body is read from a file, with its header length.
BINARY_LUA = LUA.replace(
    'wrk.headers["Content-Type"] = "application/json"',
    'wrk.headers["Content-Type"] = "application/octet-stream"\n'
    f'wrk.headers["{tensorbody.HEADER_LENGTH}"] = "{{length}}"',
)


def heavy_spec(model: Model, batching: dict) -> ServeSpec:
    """The heavier model's ServeSpec as the hub would make it, with `batching`."""
    m = parse_manifest(read_manifest(model.folder))
    return ServeSpec(
        name=m.name, version=m.version, digest="0" * 64, package_dir=model.folder, framework=m.framework,
        artifact=m.artifact, entrypoint=None, inputs=m.inputs, outputs=m.outputs,
        cpus=float(m.resources["cpu"]), batching=batching,
    )  # fmt: skip


def serve(spec: ServeSpec, folder: Path) -> servers.Server:
    """`bentoml serve service:AidService` on the generated folder, from the hub's virtualenv."""
    write_service_dir(spec, folder / "service")
    port = _free_port()
    env = {**os.environ, "BENTOML_HOME": str(folder / "bentoml"), "BENTOML_DO_NOT_TRACK": "true"}
    command = [str(servers.BENTOML), "serve", f"{SERVICE_MODULE}:{SERVICE_CLASS}", "--port", str(port)]
    log = open(folder / "bentoml.log", "ab")
    ready = lambda url: httpx.get(f"{url}/readyz", timeout=2).status_code == 200  # noqa: E731
    url = f"http://127.0.0.1:{port}"
    return servers.Server(command, url, ready, cwd=folder / "service", env=env, log=log)


def binary_load(url: str, arrays: dict, seconds: int, concurrency: int = CONCURRENCY) -> dict:
    """`post_load`'s figures for the binary route: `arrays` sent as raw tensor bytes."""
    body, length = tensorbody.encode(arrays)
    with tempfile.TemporaryDirectory() as tmp:
        (Path(tmp) / "body").write_bytes(body)
        script = Path(tmp) / "post.lua"
        script.write_text(BINARY_LUA.format(body=f'io.open("{tmp}/body", "rb"):read("*a")', length=length))
        threads = min(2, concurrency)
        cmd = [wrk_binary(), f"-t{threads}", f"-c{concurrency}", f"-d{seconds}s", "-s", str(script), url]
        out = subprocess.run(cmd, capture_output=True, text=True, check=True).stdout
    requests, errors, micros, p50, p99, mean = re.search(
        r"RESULT (\d+) (\d+) (\d+) ([\d.]+) ([\d.]+) ([\d.]+)", out
    ).groups()
    return {
        "rps": int(requests) / (int(micros) / 1e6), "errors": int(errors), "requests": int(requests),
        "p50_ms": float(p50), "p99_ms": float(p99), "mean_ms": float(mean),
    }  # fmt: skip


def loads(started: dict, model: Model) -> dict:
    """{(route, batching): a function(seconds) -> figures}: JSON /predict and the binary route, each
    with the server's CPU time per request (the fair measure where the machine is shared)."""
    import numpy as np

    arrays = {name: np.asarray(value, dtype=np.float32) for name, value in model.inputs.items()}
    made = {}
    for mode, server in started.items():
        json_load = lambda s, url=server.url: post_load(f"{url}/predict", model.native, s, CONCURRENCY)  # noqa: E731
        binary = lambda s, url=server.url: binary_load(f"{url}{tensorbody.PREDICT_ROUTE}", arrays, s)  # noqa: E731
        made["json", mode] = with_cpu(server.proc.pid, json_load)
        made["binary", mode] = with_cpu(server.proc.pid, binary)
    return made


def with_cpu(pid: int, load):
    """`load(seconds)`, and the CPU milliseconds per request that process `pid` and its own spent."""

    def run(seconds: int) -> dict:
        before = _cpu_seconds(pid)
        figures = load(seconds)
        return {**figures, "cpu_ms": (_cpu_seconds(pid) - before) * 1000 / max(1, figures["requests"])}

    return run


def _cpu_seconds(pid: int) -> float:
    """User and system CPU time of the process and its descendants (a server's workers) so far."""
    import psutil

    root = psutil.Process(pid)
    return sum(sum(p.cpu_times()[:2]) for p in [root, *root.children(recursive=True)])


def measure(runs_of: dict, rounds: int = ROUNDS, seconds: int = SECONDS) -> dict:
    """{key: the rounds' mean of rps, p50_ms, p99_ms, errors}; the order alternates by round."""
    runs = {key: [] for key in runs_of}
    for turn in range(rounds):
        for key in list(runs_of)[:: 1 if turn % 2 == 0 else -1]:
            runs[key].append(runs_of[key](seconds))
    return {key: {k: sum(r[k] for r in rs) / len(rs) for k in rs[0]} for key, rs in runs.items()}


def _check(servers_urls: dict, model: Model) -> None:
    """Both servers answer the example alike (a broken one fails here)."""
    answers = {}
    for mode, url in servers_urls.items():
        reply = httpx.post(f"{url}/predict", json=model.native, timeout=30)
        if reply.status_code != 200:
            raise RuntimeError(f"batching {mode}: {reply.status_code} {reply.text[:300]}")
        answers[mode] = reply.json()["label"]
    if answers["on"] != answers["off"]:
        raise RuntimeError(f"batching changed the answer: {answers}")


def run() -> list[dict]:
    model = heavier()
    folder = Path(tempfile.mkdtemp(prefix="aidhub-batching-"))
    try:
        with ExitStack() as stack:
            specs = {"off": heavy_spec(model, {}), "on": heavy_spec(model, BATCHING_ON)}
            started = {n: stack.enter_context(serve(s, _mkdir(folder / n))) for n, s in specs.items()}
            _check({n: server.wait().url for n, server in started.items()}, model)
            runs_of = loads(started, model)
            packages = [model.folder, batchhub.batched_copy(model, folder)]
            for workers in HUB_WORKERS:
                hub = stack.enter_context(deployed_hub(packages=packages, workers=workers))
                targets = batchhub.hub_targets(hub.url, model, workers)
                batchhub.check(targets)
                hub_loads = batchhub.hub_loads(targets, CONCURRENCY)
                runs_of |= {k: with_cpu(hub.proc.pid, f) for k, f in hub_loads.items()}
            measure(runs_of, rounds=1, seconds=2)  # warm-up
            results = measure(runs_of)
    except BaseException:
        print(f"batching: the servers' logs are in {folder}")
        raise
    shutil.rmtree(folder, ignore_errors=True)
    return _rows(model.name, results)


HUB_WORKERS = (1, 2)  # `aid serve --workers N`
ROUTES = (
    ("json", "JSON /predict"),  # straight to BentoML's own JSON route: its per-call JSON work dominates
    ("binary", "binary tensors"),  # straight to the server's tensor route
    # through the hub (CPU: the hub with its model servers)
    *((batchhub.route_name(r, n), batchhub.route_name(r, n)) for n in HUB_WORKERS for r in ("native", "v2")),
)


def _rows(model: str, results: dict) -> list[dict]:
    rows = []
    for route, what in ROUTES:
        off, on = results[route, "off"], results[route, "on"]
        name = f"{model} {what}, c={CONCURRENCY}"
        rows += [
            row(f"{name}: batching off", off["rps"], "req/s"),
            row(f"{name}: batching on", on["rps"], "req/s"),
            row(f"{name}: on / off", on["rps"] / off["rps"], "", ">= 2"),
            row(f"{name}: server CPU per call off / on", off["cpu_ms"] / on["cpu_ms"], "", ">= 2"),
            row(f"{name}: CPU per call off / on", f"{off['cpu_ms']:.2f} / {on['cpu_ms']:.2f}", "ms"),
            row(f"{name}: p50 / p99 off", f"{off['p50_ms']:.1f} / {off['p99_ms']:.1f}", "ms"),
            row(f"{name}: p50 / p99 on", f"{on['p50_ms']:.1f} / {on['p99_ms']:.1f}", "ms"),
            row(f"{name}: errors off / on", f"{off['errors']:.0f} / {on['errors']:.0f}", "", "0 / 0"),
        ]
    return rows


def _mkdir(path: Path) -> Path:
    path.mkdir(parents=True)
    return path
