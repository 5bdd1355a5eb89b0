"""HTTP load with wrk (a separate C process, so the load generator does not share Python's GIL)."""

from __future__ import annotations

import json
import re
import shutil
import subprocess
import tempfile
from pathlib import Path

# A load generator is one client: the hub's per-client rate limit (AIDHUB_RATE_PREDICT) is off for it.
UNLIMITED = {"AIDHUB_RATE_PREDICT": "0"}

LUA = """
wrk.method = "POST"
wrk.headers["Content-Type"] = "application/json"
wrk.body = {body}
done = function(summary, latency, requests)
  io.write(string.format("RESULT %d %d %d %.3f %.3f %.3f\\n", summary.requests,
    summary.errors.status + summary.errors.connect + summary.errors.read + summary.errors.write
    + summary.errors.timeout, summary.duration, latency:percentile(50) / 1000,
    latency:percentile(99) / 1000, latency.mean / 1000))
end
"""


def wrk_binary() -> str:
    found = shutil.which("wrk")
    if not found:
        raise RuntimeError("wrk is not installed: run 'make bench' as root or 'apt-get install -y wrk'.")
    return found


def post_load(url: str, body: dict, seconds: int, concurrency: int = 16) -> dict:
    """POST `body` to `url` for `seconds` with `concurrency` connections; req/s and latency in ms."""
    with tempfile.TemporaryDirectory() as tmp:
        script = Path(tmp) / "post.lua"
        script.write_text(LUA.format(body=json.dumps(json.dumps(body))))
        threads = min(2, concurrency)
        cmd = [wrk_binary(), f"-t{threads}", f"-c{concurrency}", f"-d{seconds}s", "-s", str(script), url]
        out = subprocess.run(cmd, capture_output=True, text=True, check=True).stdout
    match = re.search(r"RESULT (\d+) (\d+) (\d+) ([\d.]+) ([\d.]+) ([\d.]+)", out)
    requests, errors, micros, p50, p99, mean = match.groups()
    return {
        "rps": int(requests) / (int(micros) / 1e6), "errors": int(errors), "requests": int(requests),
        "p50_ms": float(p50), "p99_ms": float(p99), "mean_ms": float(mean),
    }  # fmt: skip
