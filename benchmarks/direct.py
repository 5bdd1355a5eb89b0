"""Calls straight to a model's server: throughput and each server's CPU per call with the direct-call
record on (the hub's own server, collected by the hub every second) vs off (a copy of the same
service in the same environment less the hub's token), loaded in turns in one run; the hub's CPU per
call collecting them; and whether every direct call reached the scorecard.

Both servers run on the last CPU and the load generator on the others (where the machine has two or
more): unpinned, identical copies of the server differed by up to 8 % in a turn, with where the
scheduler happened to put each next to wrk; pinned, by about 1 %. The hub is left where it runs, as in
production: its collection takes CPU wherever the machine has some (its share is a row of its own).

The target is on the median of the rounds' ratios (each round's two turns side by side): a turn that
the shared host slows moves the ratio of the means by a few per cent, and the median not at all."""

from __future__ import annotations

import json
import os
import shutil
import statistics
import subprocess
import tempfile
import time
from contextlib import contextmanager
from pathlib import Path

import httpx
import psutil

from benchmarks.batching import measure, with_cpu
from benchmarks.load import UNLIMITED, post_load
from benchmarks.serving import row
from runners.base import server_key
from runners.flavors.calls import TOKEN_ENV, TOKEN_HEADER
from tests.hubserver import REPO, HubProcess
from tests.postgres import _free_port

MODEL = "iris-onnx"
ROUNDS, SECONDS = 16, 6  # short turns, many: the shared machine drifts less within one
SAME_WORKER_SECONDS = 4
COLLECT_S = 1.5  # the hub collects every second
WARM_UP_CALLS = 300


def _inputs() -> dict:
    return json.loads((REPO / "examples" / MODEL / "examples.json").read_text())[0]["inputs"]


def _scorecard(hub: HubProcess) -> dict:
    return httpx.get(f"{hub.url}/api/v1/models/{MODEL}/scorecard").json()


def service_copy(hub: HubProcess, env_key: str, folder: Path) -> tuple[Path, Path]:
    """A copy of the version's service folder (as the hub generated it) in `folder`, and the bin
    folder of its environment."""
    service = folder / "service"
    shutil.copytree(hub.home / "deployments" / server_key(MODEL, "1.0.0") / "service", service)
    return service, Path(hub.env.get("AIDHUB_ENVS") or hub.home / "envs") / env_key / "bin"


def _unreported_server(
    hub: HubProcess, env_key: str, folder: Path, like: int
) -> tuple[subprocess.Popen, str]:
    """The hub's service folder for the version, served again in the environment of the hub's server
    (process `like`) without the token: nothing recorded."""
    service, bin_folder = service_copy(hub, env_key, folder)
    port = _free_port()
    hubs = psutil.Process(like).environ()
    env = {k: v for k, v in hubs.items() if k != TOKEN_ENV} | {"BENTOML_HOME": str(folder / "b")}
    command = [str(bin_folder / "bentoml"), "serve", "service:AidService", "--port", str(port)]
    proc = subprocess.Popen(
        command, cwd=service, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
    )
    url = f"http://127.0.0.1:{port}"
    for _ in range(600):
        try:
            if httpx.get(f"{url}/readyz").status_code == 200:
                return proc, url
        except httpx.HTTPError:
            pass
        time.sleep(0.1)
    proc.kill()
    raise RuntimeError("the unreported copy of the service did not get ready in 60 s")


def _rows(hub: HubProcess, reported: str, unreported: tuple[int, str]) -> list[dict]:
    """Load the hub's server and the copy without the token in turns (the order alternates by round):
    throughput, the CPU each server's processes spent per call, and the hub's (less its servers') in
    the recorded turns; the rounds' means."""
    body = {"inputs": _inputs()}
    time.sleep(3)  # the warm-up's calls are collected
    before = _scorecard(hub)["sources"]["direct"]
    (copy_pid, copy_url), server_pid = unreported, _server_pid(hub, reported)
    hub_cpu, token = _hub_cpu(hub, server_pid), psutil.Process(server_pid).environ()[TOKEN_ENV]
    on = with_cpu(server_pid, lambda seconds: _with_hub_cpu(hub_cpu, f"{reported}/predict", body, seconds))
    off = with_cpu(copy_pid, lambda seconds: post_load(f"{copy_url}/predict", body, seconds))
    runs = {"on": [], "off": []}  # each turn's figures, in order: a round's two turns side by side
    turns = {
        "on": _kept(runs["on"], _on_a_new_worker(server_pid, reported, {TOKEN_HEADER: token}, on)),
        "off": _kept(runs["off"], _on_a_new_worker(copy_pid, copy_url, {}, off)),
    }
    with _pinned([server_pid, copy_pid]):
        mean = measure(turns, ROUNDS, SECONDS)
    ratios = sorted(a["rps"] / b["rps"] for a, b in zip(runs["on"], runs["off"], strict=True))
    quarter = len(ratios) // 4
    spread = f"{statistics.median(ratios):.3f} ({ratios[quarter]:.3f}-{ratios[-1 - quarter]:.3f})"
    sent = round(mean["on"]["requests"] * ROUNDS)
    time.sleep(3)  # the collector's next rounds
    counted = _scorecard(hub)["sources"]["direct"] - before
    on, off = mean["on"], mean["off"]
    cpu = f"{on['cpu_ms'] * 1000:.1f} / {off['cpu_ms'] * 1000:.1f}"
    return [
        row("direct predict, calls recorded, c=16", on["rps"], "req/s"),
        row("direct predict, not recorded, c=16", off["rps"], "req/s"),
        row("throughput ratio recorded/not, of the means", f"{on['rps'] / off['rps']:.3f}", ""),
        row(f"the same, median of the {ROUNDS} rounds' ratios (middle half)", spread, "", ">= 0.95"),
        row("server CPU per call, recorded / not", cpu, "us"),
        row("hub CPU per recorded call (collecting, storing)", on["hub_us"], "us"),
        row("direct calls counted / answered", counted / max(sent, 1), "", "1.00"),
    ]


def _same_worker_rows(hub: HubProcess, reported: str) -> list[dict]:
    """What recording itself adds to a call at the socket, without comparing two processes (whose
    placement alone differs by a few us a call): one worker of the hub's server, loaded in turns with
    calls it records and calls carrying the hub's token (the same code, but for the record); the
    median of the rounds' differences in its CPU per call."""
    body, server_pid, url = {"inputs": _inputs()}, _server_pid(hub, reported), f"{reported}/predict"
    token = {TOKEN_HEADER: psutil.Process(server_pid).environ()[TOKEN_ENV]}
    runs = {"on": [], "token": []}
    turns = {
        "on": _kept(runs["on"], with_cpu(server_pid, lambda seconds: post_load(url, body, seconds))),
        "token": _kept(runs["token"], with_cpu(
            server_pid, lambda seconds: post_load(url, body, seconds, headers=token))),
    }  # fmt: skip
    with _pinned([server_pid]):
        measure(turns, ROUNDS, SAME_WORKER_SECONDS)
    pairs = list(zip(runs["on"], runs["token"], strict=True))
    added = statistics.median(mine["cpu_ms"] - hubs["cpu_ms"] for mine, hubs in pairs)
    ratio = statistics.median(mine["rps"] / hubs["rps"] for mine, hubs in pairs)
    return [
        row(f"the same worker, calls recorded / carrying the hub's token: {ROUNDS} rounds' median ratio",
            f"{ratio:.3f}", ""),
        row("  what recording adds to the server's CPU per call there (median)", added * 1000, "us"),
    ]  # fmt: skip


def _kept(runs: list, turn):
    """`turn`, appending each run's figures to `runs` (`measure` keeps only their means)."""

    def run(seconds: int) -> dict:
        figures = turn(seconds)
        runs.append(figures)
        return figures

    return run


def _on_a_new_worker(server: int, url: str, headers: dict, turn):
    """`turn`, each time on a new worker process of the server, warmed up by calls with `headers` (the
    hub's token: not recorded). Identical copies of a server differ by up to 2.5 % in CPU per call
    for as long as their worker lives (where its memory happened to land); a new worker per turn
    makes that a noise the rounds average out, not a bias of one side."""

    def run(seconds: int) -> dict:
        workers = _workers(server)
        for worker in workers:
            worker.terminate()  # BentoML's arbiter starts another (~10 s)
        deadline = time.monotonic() + 120
        while not (_workers(server) and not set(_workers(server)) & set(workers)):
            if time.monotonic() > deadline:
                raise RuntimeError(f"the server at {url} did not start a new worker in 120 s")
            time.sleep(0.2)
        with httpx.Client(timeout=60, headers=headers) as client:
            for _ in range(WARM_UP_CALLS):
                client.post(f"{url}/predict", json={"inputs": _inputs()}).raise_for_status()
        return turn(seconds)

    return run


def _workers(server: int) -> list:
    """The server's worker processes (BentoML's arbiter's children that serve)."""
    found = []
    for process in psutil.Process(server).children(recursive=True):
        try:
            if process.status() != psutil.STATUS_ZOMBIE and "worker" in " ".join(process.cmdline()):
                found.append(process)
        except psutil.Error:
            pass  # gone meanwhile
    return found


def _hub_cpu(hub: HubProcess, server_pid: int):
    """A function giving the CPU seconds the hub's own processes (not its model servers) spent so far."""
    servers = {server_pid, *(p.pid for p in psutil.Process(server_pid).children(recursive=True))}
    own = [p for p in [psutil.Process(hub.proc.pid), *psutil.Process(hub.proc.pid).children(recursive=True)]
           if p.pid not in servers]  # fmt: skip
    return lambda: sum(sum(p.cpu_times()[:2]) for p in own)


def _with_hub_cpu(hub_cpu, url: str, body: dict, seconds: int) -> dict:
    """`post_load`, and the hub's CPU per call over the turn and the collection of its calls after it."""
    before = hub_cpu()
    figures = post_load(url, body, seconds)
    time.sleep(COLLECT_S)
    return {**figures, "hub_us": (hub_cpu() - before) * 1e6 / max(1, figures["requests"])}


@contextmanager
def _pinned(servers: list[int]):
    """The servers' processes on the last CPU, this process and the load generator it starts on the
    others, for the block; nothing where the machine has one CPU."""
    cpus = sorted(os.sched_getaffinity(0))
    if len(cpus) < 2:
        yield
        return
    for pid in servers:
        for process in [psutil.Process(pid), *psutil.Process(pid).children(recursive=True)]:
            process.cpu_affinity(cpus[-1:])
    os.sched_setaffinity(0, cpus[:-1])
    try:
        yield
    finally:
        os.sched_setaffinity(0, cpus)


def _server_pid(hub: HubProcess, url: str) -> int:
    """The process of the hub's model server that listens at `url`."""
    port = url.rsplit(":", 1)[1]
    for process in psutil.Process(hub.proc.pid).children(recursive=True):
        command = process.cmdline()
        if "serve" in command and port in command:
            return process.pid
    raise RuntimeError(f"no model server of the hub listens at {url}")


def _paced(url: str, body: dict, per_second: int, seconds: int) -> int:
    """POST `body` to `url` at `per_second` for `seconds`; how many calls were answered."""
    answered, start = 0, time.monotonic()
    with httpx.Client() as client:
        for i in range(per_second * seconds):
            time.sleep(max(0.0, start + i / per_second - time.monotonic()))
            answered += client.post(url, json=body).status_code == 200
    return answered


def _outage_rows(hub: HubProcess, reported: str) -> list[dict]:
    """Direct calls at 100/s through a 60 s hub outage: how many reach the scorecard once it is back."""
    time.sleep(3)
    before = _scorecard(hub)["sources"]["direct"]
    hub.stop()
    try:
        sent = _paced(f"{reported}/predict", {"inputs": _inputs()}, 100, 60)
    finally:
        hub.start()
    deadline = time.monotonic() + 30
    while (counted := _scorecard(hub)["sources"]["direct"] - before) < sent and time.monotonic() < deadline:
        time.sleep(0.5)
    return [row("direct calls during a 60 s hub outage at 100/s: counted / answered", f"{counted} / {sent}",
                "", "all")]  # fmt: skip


def run() -> list[dict]:
    # No scheduled drift runs: one after every 1,000 calls would ask the server for its answers on the
    # reference rows and run Evidently beside the load; their cost is `python -m benchmarks drift`'s.
    env = UNLIMITED | {"AIDHUB_DRIFT_EVERY": "0"}
    hub = HubProcess(Path(tempfile.mkdtemp(prefix="aidhub-bench-")), extra_env=env).start()
    folder = Path(tempfile.mkdtemp(prefix="aidhub-bench-off-"))
    proc = None
    try:
        assert hub.aid("publish", str(REPO / "examples" / MODEL), "--deploy").returncode == 0
        deployment = httpx.get(f"{hub.url}/api/v1/models/{MODEL}/versions/1.0.0").json()["deployment"]
        like = _server_pid(hub, deployment["url"])
        proc, unreported = _unreported_server(hub, deployment["env_key"], folder, like)
        post_load(f"{unreported}/predict", {"inputs": _inputs()}, 3)  # warm both
        post_load(f"{deployment['url']}/predict", {"inputs": _inputs()}, 3)
        rows = _rows(hub, deployment["url"], (proc.pid, unreported))
        return [*rows, *_same_worker_rows(hub, deployment["url"]), *_outage_rows(hub, deployment["url"])]
    finally:
        if proc:
            proc.terminate()
            proc.wait(30)
        hub.undeploy_all()
        hub.stop()
        shutil.rmtree(folder, ignore_errors=True)
        shutil.rmtree(hub.home, ignore_errors=True)
