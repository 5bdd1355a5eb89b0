"""Calls straight to a model's server: throughput and each server's CPU per call with the direct-call
record on (the hub's own server, collected by the hub every second) vs off (a copy of the same
service started without the hub's token), loaded in turns in one run; and whether every direct call
reached the scorecard."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import tempfile
import time
from pathlib import Path

import httpx

from benchmarks.batching import measure, with_cpu
from benchmarks.load import UNLIMITED, post_load
from benchmarks.serving import row
from runners.base import server_key
from runners.flavors.calls import TOKEN_ENV
from tests.hubserver import REPO, HubProcess
from tests.postgres import _free_port

MODEL = "iris-onnx"
ROUNDS, SECONDS = 10, 6  # short turns, many: the shared machine drifts less within one


def _inputs() -> dict:
    return json.loads((REPO / "examples" / MODEL / "examples.json").read_text())[0]["inputs"]


def _scorecard(hub: HubProcess) -> dict:
    return httpx.get(f"{hub.url}/api/v1/models/{MODEL}/scorecard").json()


def _unreported_server(hub: HubProcess, env_key: str, folder: Path) -> tuple[subprocess.Popen, str]:
    """The hub's service folder for the version, served again without the token: nothing recorded."""
    service = folder / "service"
    shutil.copytree(hub.home / "deployments" / server_key(MODEL, "1.0.0") / "service", service)
    envs = Path(hub.env.get("AIDHUB_ENVS") or hub.home / "envs")
    port = _free_port()
    env = {k: v for k, v in os.environ.items() if k != TOKEN_ENV} | {"BENTOML_HOME": str(folder / "b")}
    command = [str(envs / env_key / "bin" / "bentoml"), "serve", "service:AidService", "--port", str(port)]
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
    throughput and the CPU each server's processes spent per call, the rounds' means."""
    body = {"inputs": _inputs()}
    time.sleep(3)  # the warm-up's calls are collected
    before = _scorecard(hub)["sources"]["direct"]
    (copy_pid, copy_url), server_pid = unreported, _server_pid(hub, reported)
    turns = {
        "on": with_cpu(server_pid, lambda seconds: post_load(f"{reported}/predict", body, seconds)),
        "off": with_cpu(copy_pid, lambda seconds: post_load(f"{copy_url}/predict", body, seconds)),
    }
    mean = measure(turns, ROUNDS, SECONDS)
    sent = round(mean["on"]["requests"] * ROUNDS)
    time.sleep(3)  # the collector's next rounds
    counted = _scorecard(hub)["sources"]["direct"] - before
    on, off = mean["on"], mean["off"]
    cpu = f"{on['cpu_ms'] * 1000:.1f} / {off['cpu_ms'] * 1000:.1f}"
    return [
        row("direct predict, calls recorded, c=16", on["rps"], "req/s"),
        row("direct predict, not recorded, c=16", off["rps"], "req/s"),
        row("throughput ratio recorded/not", on["rps"] / off["rps"], "", ">= 0.95"),
        row("server CPU per call, recorded / not", cpu, "us"),
        row("direct calls counted / answered", counted / max(sent, 1), "", "1.00"),
    ]


def _server_pid(hub: HubProcess, url: str) -> int:
    """The process of the hub's model server that listens at `url`."""
    import psutil

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
    hub = HubProcess(Path(tempfile.mkdtemp(prefix="aidhub-bench-")), extra_env=UNLIMITED).start()
    folder = Path(tempfile.mkdtemp(prefix="aidhub-bench-off-"))
    proc = None
    try:
        assert hub.aid("publish", str(REPO / "examples" / MODEL), "--deploy").returncode == 0
        deployment = httpx.get(f"{hub.url}/api/v1/models/{MODEL}/versions/1.0.0").json()["deployment"]
        proc, unreported = _unreported_server(hub, deployment["env_key"], folder)
        post_load(f"{unreported}/predict", {"inputs": _inputs()}, 3)  # warm both
        post_load(f"{deployment['url']}/predict", {"inputs": _inputs()}, 3)
        rows = _rows(hub, deployment["url"], (proc.pid, unreported))
        return [*rows, *_outage_rows(hub, deployment["url"])]
    finally:
        if proc:
            proc.terminate()
            proc.wait(30)
        hub.undeploy_all()
        hub.stop()
        shutil.rmtree(folder, ignore_errors=True)
        shutil.rmtree(hub.home, ignore_errors=True)
