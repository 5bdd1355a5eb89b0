"""wrk load with a binary body and headers of our own: the v2 binary tensor extension (a JSON header,
then the tensor's bytes), as the Triton client sends it by default.

The body goes into wrk's Lua script as a decimal-escaped string ("\\147\\78..."), which holds any byte.
"""

from __future__ import annotations

import json
import re
import subprocess
import tempfile
from dataclasses import dataclass, field
from pathlib import Path

from benchmarks.load import LUA, wrk_binary

HEADER_LENGTH = "Inference-Header-Content-Length"


@dataclass(frozen=True)
class Raw:
    """A request body sent as it is, with its headers (Content-Type among them)."""

    body: bytes
    headers: dict = field(default_factory=dict)


def v2_binary(name: str, array) -> Raw:
    """A v2 infer body with `array` (float32) as binary data under input `name`."""
    tensor = {"name": name, "shape": list(array.shape), "datatype": "FP32"}
    header = json.dumps({"inputs": [{**tensor, "parameters": {"binary_data_size": array.nbytes}}]}).encode()
    headers = {"Content-Type": "application/octet-stream", HEADER_LENGTH: str(len(header))}
    return Raw(header + array.astype("<f4").tobytes(), headers)


def lua_string(data: bytes) -> str:
    return '"' + "".join(f"\\{b}" for b in data) + '"'


def post_raw(url: str, raw: Raw, seconds: int, concurrency: int = 16) -> dict:
    """`benchmarks.load.post_load` for a Raw body: req/s and latency in ms."""
    headers = "".join(f'wrk.headers["{k}"] = "{v}"\n' for k, v in raw.headers.items())
    with tempfile.TemporaryDirectory() as tmp:
        script = Path(tmp) / "post.lua"
        script.write_text(LUA.format(body=lua_string(raw.body)) + headers)
        threads = min(2, concurrency)
        cmd = [wrk_binary(), f"-t{threads}", f"-c{concurrency}", f"-d{seconds}s", "-s", str(script), url]
        out = subprocess.run(cmd, capture_output=True, text=True, check=True).stdout
    return _result(out)


def _result(out: str) -> dict:
    """The keys `post_load` gives, from the RESULT line of benchmarks.load.LUA."""
    match = re.search(r"RESULT (\d+) (\d+) (\d+) ([\d.]+) ([\d.]+) ([\d.]+)(?: (\d+) (\d+))?", out)
    requests, errors, micros, p50, p99, mean, not_2xx, timeouts = match.groups()
    found = {
        "rps": int(requests) / (int(micros) / 1e6), "errors": int(errors), "requests": int(requests),
        "p50_ms": float(p50), "p99_ms": float(p99), "mean_ms": float(mean),
    }  # fmt: skip
    if not_2xx is not None:
        found |= {"not_2xx": int(not_2xx), "timeouts": int(timeouts)}
    return found
