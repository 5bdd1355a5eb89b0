"""CPU per direct call, recorded and not, in place and with little noise: the iris-onnx service as the hub
generated it, its real BentoML ASGI app called in one process (`benchmarks/inplace_calls.py`: no sockets,
no load generator, the hub's fetch every 3,000 calls), with the hub's token and without, in new
processes taken in turns, each on one CPU. The socket benchmark (`direct`) swings by ~2 % from run to
run; this one shows in microseconds what a change to the recording path costs or saves in place
(between BentoML's own work), which `directcost` (the recording code timed alone) cannot.
`python -m benchmarks directinplace` (~3 min)."""

from __future__ import annotations

import json
import os
import shutil
import statistics
import subprocess
import tempfile
from pathlib import Path

import httpx

from benchmarks.direct import MODEL, _inputs, service_copy
from benchmarks.serving import row
from runners.flavors.calls import TOKEN_ENV
from tests.hubserver import REPO, HubProcess

PROCESSES, CALLS, ROUNDS = 4, 5000, 4  # per side; each process's rounds after one to warm up
SCRIPT = Path(__file__).with_name("inplace_calls.py")


def _service(folder: Path) -> tuple[Path, Path]:
    """(a copy of the version's service folder, its environment's python), from a hub that deploys it."""
    hub = HubProcess(folder / "home").start()
    try:
        assert hub.aid("publish", str(REPO / "examples" / MODEL), "--deploy").returncode == 0
        deployment = httpx.get(f"{hub.url}/api/v1/models/{MODEL}/versions/1.0.0").json()["deployment"]
        service, bin_folder = service_copy(hub, deployment["env_key"], folder)
        return service, bin_folder / "python"
    finally:
        hub.undeploy_all()
        hub.stop()


def _us_per_call(service: Path, python: Path, recorded: bool) -> float:
    """The median round of one new process (on the last CPU)."""
    env = {"PATH": os.environ["PATH"], "HOME": str(service.parent), "BENTOML_HOME": str(service.parent / "b"),
           "BENTOML_DO_NOT_TRACK": "true", "CUDA_VISIBLE_DEVICES": ""}  # fmt: skip
    if recorded:
        env[TOKEN_ENV] = "benchmark-token"
    cpu = max(os.sched_getaffinity(0))
    body = json.dumps({"inputs": _inputs()})
    done = subprocess.run(
        [str(python), str(SCRIPT), str(CALLS), str(ROUNDS), body], cwd=service, env=env, capture_output=True,
        text=True, check=True, preexec_fn=lambda: os.sched_setaffinity(0, {cpu}),
    )  # fmt: skip
    return statistics.median(json.loads(done.stdout.strip().splitlines()[-1])["us"])


def run() -> list[dict]:
    folder = Path(tempfile.mkdtemp(prefix="aidhub-bench-inplace-"))
    try:
        service, python = _service(folder)
        sides = {True: [], False: []}
        for turn in range(PROCESSES):
            for recorded in (True, False) if turn % 2 else (False, True):
                sides[recorded].append(_us_per_call(service, python, recorded))
    finally:
        shutil.rmtree(folder, ignore_errors=True)
    on, off = statistics.mean(sides[True]), statistics.mean(sides[False])
    spread = (
        statistics.stdev([a - b for a, b in zip(sides[True], sides[False], strict=True)]) / PROCESSES**0.5
    )
    return [
        row(
            "/predict in place (BentoML's ASGI app, one process), recorded / not",
            f"{on:.1f} / {off:.1f}",
            "us",
        ),
        row(
            "what recording adds in place, per call (+- standard error)",
            f"{on - off:.1f} +- {spread:.1f}",
            "us",
        ),
    ]
