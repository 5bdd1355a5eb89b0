"""Publishing large packages: the `aid` CLI and `aid serve` as subprocesses over loopback, as a
researcher would run them (docs/storage.md describes the upload).

- a 2 GiB package (random bytes): throughput, and the peak memory of the CLI (its rusage) and of the
  hub's gunicorn worker (VmHWM, reset just before the upload through /proc/<pid>/clear_refs);
- a second version of it with the same weights, only predict.py and the card changed: the bytes sent
  (the CLI's `... new` figure, from the hub's `new_bytes`) and the seconds to published;
- publish to ready of a 1 GiB python-flavor model whose setup() reads its weights file: on the process
  runner, on the container runner (a weights image, then the version image FROM it), and a second
  version with the same weights on the container runner (it builds FROM the first one's weights
  image and sends none of the weights: the build log is checked, and its context size reported).
  The model's environment is built first by a small model with the same requirements, so these
  times are the package's, not the environment's.

Fresh random bytes every run: no earlier run's blobs or layers help.
"""

from __future__ import annotations

import hashlib
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import docker
import httpx
import yaml

from benchmarks.serving import row
from tests.hubserver import AID, HubProcess

MIB = 1024**2
BIG_BYTES = 2 * 1024**3
READY_BYTES = 1024**3
DOCKER_HOST = os.environ.get("DOCKER_HOST", "unix:///run/aidhub/podman.sock")
UNITS = {"B": 1, "kB": 1e3, "MB": 1e6, "GB": 1e9, "TB": 1e12}
BUILT_RE = re.compile(r"Built image \S+ \(\S+\) in ([0-9.]+) s")
CONTEXT_RE = re.compile(r"^Building image aidhub/\S+ FROM \S+ \(context .*: \d+ files, ([0-9.]+) MB\)$", re.M)
NEW_RE = re.compile(r", ([0-9.]+) (\w+) new, ([0-9.]+) (\w+) deduplicated")
PREDICT = '''"""Reads the first MiB of its weights at setup, as a real model opens its weights."""

import hashlib
from pathlib import Path


class Model:
    def setup(self):
        with open(Path(__file__).parent / "weights.bin", "rb") as weights:
            self.head = hashlib.sha256(weights.read(1024 * 1024)).hexdigest()

    def predict(self, text):
        return {"head": self.head, "text": text}  # {note}
'''


# --- packages -------------------------------------------------------------------------------


def write_random(path: Path, size: int) -> Path:
    """`size` random bytes into `path`, 16 MiB at a time."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "wb") as handle:
        for start in range(0, size, 16 * MIB):
            handle.write(os.urandom(min(16 * MIB, size - start)))
    return path


def write_package(folder: Path, name: str, version: str, weights: Path, note: str = "first") -> Path:
    """A python-flavor package in `folder`: aid.yaml, predict.py, README.md and `weights` as
    weights.bin (hard-linked: the CLI only reads it)."""
    folder.mkdir(parents=True)
    manifest = {
        "name": name, "version": version, "task": "text-classification", "license": "MIT",
        "summary": "Benchmark model: large random weights", "framework": "python",
        "entrypoint": "predict.py:Model", "inputs": {"text": {"dtype": "string", "shape": []}},
        "outputs": {"head": {"dtype": "string", "shape": []}, "text": {"dtype": "string", "shape": []}},
    }  # fmt: skip
    (folder / "aid.yaml").write_text(yaml.safe_dump(manifest, sort_keys=False))
    (folder / "predict.py").write_text(PREDICT.replace("{note}", note))
    (folder / "README.md").write_text(f"# {name} {version}\n\nRandom weights ({note}).\n")
    os.link(weights, folder / "weights.bin")
    return folder


# --- running the CLI and reading the hub's memory -------------------------------------------


def run_aid(hub: HubProcess, folder: Path, *args: str) -> dict:
    """`aid --hub URL ARGS...`: its seconds, peak RSS (bytes) and output. A small Python process starts
    it and reads its peak from RUSAGE_CHILDREN: a child forked from this (large) process would report
    this process's size as its own peak."""
    out, peak = folder / f"aid-{time.monotonic_ns()}.out", folder / f"aid-{time.monotonic_ns()}.peak"
    with open(out, "w") as sink:
        began = time.monotonic()
        command = [sys.executable, "-c", PEAK_RSS, str(peak), AID, "--hub", hub.url, *args]
        code = subprocess.run(command, stdout=sink, stderr=subprocess.STDOUT, env=hub.env).returncode
        seconds = time.monotonic() - began
    text = out.read_text(errors="replace")
    if code != 0:
        raise RuntimeError(f"aid {' '.join(args)} exited {code}:\n{text[-3000:]}")
    return {"seconds": seconds, "peak_rss": int(peak.read_text()) * 1024, "output": text}


PEAK_RSS = (
    "import resource, subprocess, sys; code = subprocess.run(sys.argv[2:]).returncode; "
    "open(sys.argv[1], 'w').write(str(resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss)); "
    "sys.exit(code)"
)


def hub_worker(hub: HubProcess) -> int:
    """The pid of the gunicorn worker of `aid serve` (a child of the master with its command line)."""
    master = hub.proc.pid
    cmdline = Path(f"/proc/{master}/cmdline").read_bytes()
    children = Path(f"/proc/{master}/task/{master}/children").read_text().split()
    workers = [int(c) for c in children if Path(f"/proc/{c}/cmdline").read_bytes() == cmdline]
    if len(workers) != 1:
        raise RuntimeError(f"expected one gunicorn worker under pid {master}, found {workers}")
    return workers[0]


def reset_peak(pid: int) -> bool:
    """Reset the process's VmHWM to its current RSS (Linux >= 4.0); False when refused."""
    try:
        Path(f"/proc/{pid}/clear_refs").write_text("5")
        return True
    except OSError:
        return False


def peak_rss(pid: int) -> int:
    """VmHWM of `pid` in bytes."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) * 1024
    raise RuntimeError(f"no VmHWM for pid {pid}")


def new_bytes(output: str) -> tuple[float, float]:
    """(new, deduplicated) bytes from the CLI's `Published ...` line (decimal units, 3 digits)."""
    match = NEW_RE.search(output)
    if not match:
        raise RuntimeError(f"no 'new, deduplicated' figures in the CLI's output:\n{output[-2000:]}")
    new, new_unit, dedup, dedup_unit = match.groups()
    return float(new) * UNITS[new_unit], float(dedup) * UNITS[dedup_unit]


# --- the measurements -------------------------------------------------------------------------


def big_package_rows(hub: HubProcess, root: Path) -> list[dict]:
    """A 2 GiB package, then a second version of it with the same weights."""
    weights = write_random(root / "big-weights.bin", BIG_BYTES)
    first = write_package(root / "big-1.0.0", "bench-big", "1.0.0", weights)
    worker = hub_worker(hub)
    before, exact = peak_rss(worker), reset_peak(worker)
    sent = run_aid(hub, root, "publish", str(first))
    hub_peak = peak_rss(worker)
    second = write_package(root / "big-1.1.0", "bench-big", "1.1.0", weights, note="second")
    again = run_aid(hub, root, "publish", str(second))
    new, dedup = new_bytes(again["output"])
    hashed = float(re.search(r"Hashed \d+ files \(.*?\) in ([0-9.]+) s", sent["output"]).group(1))
    peak_what = "peak during the upload" if exact else f"peak since start, {before / MIB:.0f} MiB before"
    return [
        row("publish 2 GiB package over loopback: throughput", BIG_BYTES / 1e6 / sent["seconds"], "MB/s"),
        row("publish 2 GiB: seconds (of which hashing)", f"{sent['seconds']:.1f} ({hashed:.1f})", "s"),
        row("publish 2 GiB: aid CLI peak RSS", sent["peak_rss"] / MIB, "MiB", "flat"),
        row(f"publish 2 GiB: hub worker {peak_what}", hub_peak / MIB, "MiB", "flat"),
        row("second version, same weights: bytes uploaded (new)", f"{new:,.0f}", "B", "only what changed"),
        row("second version, same weights: deduplicated", dedup / 1e9, "GB"),
        row("second version, same weights: seconds to published", again["seconds"], "s"),
        row("blob store after the two versions", _tree_bytes(hub.home / "blobs") / 1e9, "GB", "one copy"),
    ]


def _tree_bytes(root: Path) -> int:
    """Bytes of the distinct files (inodes) under `root`."""
    seen = {(p.stat().st_dev, p.stat().st_ino): p.stat().st_size for p in root.rglob("*") if p.is_file()}
    return sum(seen.values())


def _warm_environment(hub: HubProcess, root: Path, name: str) -> None:
    """Deploy a small model with the same requirements, so that its environment exists."""
    weights = write_random(root / f"{name}-small.bin", MIB)
    run_aid(hub, root, "publish", str(write_package(root / name, name, "0.1.0", weights)), "--deploy")


def _ready_seconds(hub: HubProcess, root: Path, name: str, version: str, weights: Path, note: str) -> float:
    folder = write_package(root / f"{name}-{version}", name, version, weights, note)
    seconds = run_aid(hub, root, "publish", str(folder), "--deploy")["seconds"]
    url = httpx.get(f"{hub.url}/api/v1/models/{name}/versions/{version}").json()["deployment"]["url"]
    reply = httpx.post(f"{url}/predict", json={"inputs": {"text": "x"}}, timeout=30).json()
    with open(weights, "rb") as handle:
        assert reply["head"] == hashlib.sha256(handle.read(MIB)).hexdigest(), reply
    return seconds


def _container_build(hub: HubProcess, name: str, version: str) -> dict:
    """From the version's build log: whether its weights image existed already, the seconds of the
    engine's builds (the weights image's and the version image's) and the version context's MB."""
    log = httpx.get(f"{hub.url}/api/v1/models/{name}@{version}/logs", timeout=10).json()["build"]["log"]
    return {
        "reused": bool(re.search(r"^The weights image \S+ exists .*no weights to send", log, re.M)),
        "built": bool(re.search(r"^Building weights image ", log, re.M)),
        "seconds": sum(float(s) for s in BUILT_RE.findall(log)),
        "context_mb": float(CONTEXT_RE.search(log).group(1)),
    }


def ready_rows(process_hub: HubProcess, container_hub: HubProcess, root: Path) -> list[dict]:
    """Publish to ready of a 1 GiB model on each runner; a second version on the container runner."""
    _warm_environment(process_hub, root / "p", "bench-warm")
    _warm_environment(container_hub, root / "c", "bench-warm")
    weights = write_random(root / "ready-weights.bin", READY_BYTES)
    on_process = _ready_seconds(process_hub, root / "p", "bench-ready", "1.0.0", weights, "first")
    on_container = _ready_seconds(container_hub, root / "c", "bench-ready", "1.0.0", weights, "first")
    second = _ready_seconds(container_hub, root / "c", "bench-ready", "1.1.0", weights, "second")
    first, again = (_container_build(container_hub, "bench-ready", v) for v in ("1.0.0", "1.1.0"))
    if not first["built"] or again["built"] or not again["reused"]:
        raise RuntimeError(
            f"expected one weights image, built by 1.0.0 and reused by 1.1.0: {first}, {again}"
        )
    return [
        row("1 GiB model, publish --deploy to ready: process runner", on_process, "s"),
        row(
            "1 GiB model, publish --deploy to ready: container runner (builds its weights image)",
            on_container,
            "s",
        ),
        row("container: second version, same weights, to ready (weights image reused)", second, "s"),
        row(
            "container: engine builds, first / second version",
            f"{first['seconds']:.1f} / {again['seconds']:.1f}",
            "s",
        ),  # fmt: skip
        row(
            "container: version image context, first / second version",
            f"{first['context_mb']:.2f} / {again['context_mb']:.2f}",
            "MB",
        ),  # fmt: skip
    ]


def _remove_images(names: list[str]) -> None:
    """The models' version images, then the weights images they were built FROM."""
    client = docker.DockerClient(base_url=DOCKER_HOST, timeout=300)
    try:
        weights = set()
        for name in names:
            for image in client.images.list(filters={"label": f"aidhub.model={name}"}):
                weights.add((image.labels or {}).get("aidhub.weights"))
                _remove(client, image.id)
        for key in weights - {None}:
            for image in client.images.list(filters={"label": f"aidhub.weights={key}"}):
                _remove(client, image.id)
    finally:
        client.close()


def _remove(client, image_id: str) -> None:
    try:
        client.images.remove(image_id, force=True)
    except docker.errors.APIError:
        pass  # removed with its child already


def run() -> list[dict]:
    root = Path(tempfile.mkdtemp(prefix="aidhub-bench-publish-"))
    plain = HubProcess(root / "process-hub", runner="process").start()
    boxed = HubProcess(root / "container-hub", runner="container", extra_env={"DOCKER_HOST": DOCKER_HOST})
    try:
        rows = big_package_rows(plain, root)
        boxed.start()
        return rows + ready_rows(plain, boxed, root)
    finally:
        for hub in (plain, boxed):
            if hub.proc:
                hub.undeploy_all()
                hub.stop()
        _remove_images(["bench-ready", "bench-warm"])
        shutil.rmtree(root, ignore_errors=True)
