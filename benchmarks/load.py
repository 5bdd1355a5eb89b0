"""HTTP load with wrk (a separate C process, so the load generator does not share Python's GIL)."""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import tempfile
from contextlib import contextmanager
from pathlib import Path

# A load generator is one client: the hub's per-client rate limit (AIDHUB_RATE_PREDICT) is off for it.
UNLIMITED = {"AIDHUB_RATE_PREDICT": "0"}

LUA = """
wrk.method = "POST"
wrk.headers["Content-Type"] = "application/json"
wrk.body = {body}
done = function(summary, latency, requests)
  io.write(string.format("RESULT %d %d %d %.3f %.3f %.3f %d %d\\n", summary.requests,
    summary.errors.status + summary.errors.connect + summary.errors.read + summary.errors.write
    + summary.errors.timeout, summary.duration, latency:percentile(50) / 1000,
    latency:percentile(99) / 1000, latency.mean / 1000, summary.errors.status, summary.errors.timeout))
end
"""


def wrk_binary() -> str:
    found = shutil.which("wrk")
    if not found:
        raise RuntimeError("wrk is not installed: run 'make bench' as root or 'apt-get install -y wrk'.")
    return found


def post_load(url: str, body: dict, seconds: int, concurrency: int = 16, headers: dict | None = None) -> dict:
    """POST `body` (and `headers`) to `url` for `seconds` with `concurrency` connections; req/s and
    latency in ms."""
    with tempfile.TemporaryDirectory() as tmp:
        script = Path(tmp) / "post.lua"
        extra = "".join(
            f"wrk.headers[{json.dumps(k)}] = {json.dumps(v)}\n" for k, v in (headers or {}).items()
        )
        script.write_text(LUA.format(body=json.dumps(json.dumps(body))) + extra)
        threads = min(2, concurrency)
        cmd = [wrk_binary(), f"-t{threads}", f"-c{concurrency}", f"-d{seconds}s", "-s", str(script), url]
        out = subprocess.run(cmd, capture_output=True, text=True, check=True).stdout
    match = re.search(r"RESULT (\d+) (\d+) (\d+) ([\d.]+) ([\d.]+) ([\d.]+) (\d+) (\d+)", out)
    requests, errors, micros, p50, p99, mean, not_2xx, timeouts = match.groups()
    return {
        "rps": int(requests) / (int(micros) / 1e6), "errors": int(errors), "requests": int(requests),
        "p50_ms": float(p50), "p99_ms": float(p99), "mean_ms": float(mean),
        "not_2xx": int(not_2xx), "timeouts": int(timeouts),  # of `errors`; wrk times out after 2 s
    }  # fmt: skip


def workers_rows(model: str = "iris-onnx", rounds: int = 2, seconds: int = 8, concurrency: int = 64) -> list:
    """Predict throughput through the hub with `aid serve --workers 1` and `--workers 2`: one hub each
    (same model, process runner), loaded in turns so that drift in the machine's load hits both alike;
    the mean of `rounds`. Twice: calls the model answers, and calls the hub refuses itself (422: an
    input the schema lacks), which measure the web tier alone. With each, the CPU time the hub's own
    processes (master, web workers, supervisor) spent per call. `python -m benchmarks.load` (~2 min)."""
    from tests.hubserver import REPO

    example = json.loads((REPO / "examples" / model / "examples.json").read_text())[0]["inputs"]
    bodies = {"model answers": {"inputs": example}, "hub refuses (422)": {"inputs": {"nothing": [1.0]}}}
    rows = []
    with _hub(1, model) as one, _hub(2, model) as two:
        for what, body in bodies.items():
            mean = _in_turns({1: one, 2: two}, model, body, rounds, seconds, concurrency)
            rows += [_row(f"{what}, --workers {n}, c={concurrency}", m) for n, m in mean.items()]
            rows.append({"name": f"{what}: throughput ratio 2/1", "ratio": mean[2]["rps"] / mean[1]["rps"]})
    return rows


def _in_turns(hubs: dict, model: str, body: dict, rounds: int, seconds: int, concurrency: int) -> dict:
    urls = {n: f"{hub.url}/api/v1/models/{model}/predict" for n, hub in hubs.items()}
    for url in urls.values():
        post_load(url, body, 2, concurrency)  # warm: connections, route caches, the model
    runs = {n: [] for n in urls}
    for _ in range(rounds):
        for n, url in urls.items():
            before = _cpu_seconds(hubs[n].proc.pid)
            found = post_load(url, body, seconds, concurrency)
            found["hub_cpu_ms_per_call"] = (
                (_cpu_seconds(hubs[n].proc.pid) - before) * 1000 / found["requests"]
            )
            runs[n].append(found)
    return {n: {k: sum(r[k] for r in found) / len(found) for k in found[0]} for n, found in runs.items()}


def _cpu_seconds(master: int) -> float:
    """User and system CPU time of gunicorn's master and its children (web workers, supervisor)."""
    total = 0
    for entry in os.listdir("/proc"):
        try:
            fields = Path(f"/proc/{entry}/stat").read_text().rsplit(")", 1)[1].split()
        except (OSError, IndexError):
            continue
        if entry.isdigit() and (int(entry) == master or int(fields[1]) == master):
            total += int(fields[11]) + int(fields[12])  # utime, stime (fields 14 and 15 of stat)
    return total / os.sysconf("SC_CLK_TCK")


def _row(name: str, m: dict) -> dict:
    """wrk's errors are timeouts and connection errors here: a 422 is what the refused calls are for."""
    return {"name": name, "rps": round(m["rps"], 1), "p50_ms": m["p50_ms"], "p99_ms": m["p99_ms"],
            "hub_cpu_ms_per_call": round(m["hub_cpu_ms_per_call"], 3), "timeouts": m["timeouts"],
            "not_2xx": m["not_2xx"]}  # fmt: skip


@contextmanager
def _hub(workers: int, model: str):
    from tests.hubserver import REPO, HubProcess

    home = Path(tempfile.mkdtemp(prefix=f"aidhub-bench-w{workers}-"))
    hub = HubProcess(home, extra_env=UNLIMITED, workers=workers).start()
    try:
        done = hub.aid("publish", str(REPO / "examples" / model), "--deploy")
        assert done.returncode == 0, done.stderr
        yield hub
    finally:
        hub.undeploy_all()
        hub.stop()
        shutil.rmtree(home, ignore_errors=True)


if __name__ == "__main__":
    for found in workers_rows():
        print(json.dumps(found))
