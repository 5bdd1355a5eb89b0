"""Where the time of one hub-proxied predict call goes, measured with cProfile.

An in-process Hub (the process runner, SQLite) serves the ONNX iris example; the native predict call
is made through the WSGI fast path `aid serve` runs (web/fastpath.py), one call at a time, under
cProfile. Each phase is one function's cumulative time per call; "forward" is the round trip to the
model server, and the model's own share of it is the onnxruntime session run on the same input.
The rows are what the README's latency budget quotes; `python -m benchmarks budget` prints them.
"""

from __future__ import annotations

import cProfile
import io
import json
import pstats
import tempfile
import time
from pathlib import Path

from benchmarks.serving import row
from tests.hubserver import REPO, cache_env

MODEL = "iris-onnx"
CALLS = 2000
FORWARD = "forward: HTTP round trip to the server"


def _phases() -> dict:
    """phase -> the function whose cumulative time it is, in the order one call runs them."""
    from hub.auth import AuthUseCases
    from hub.hub import Hub
    from hub.serving import _forward, check_request
    from monitor.metrics import Metrics
    from monitor.predlog import PredictionLog
    from web.requestbodies import parse_json

    return {
        "parse the request body": parse_json,
        "caller and permission": AuthUseCases.principal,
        "route lookup (cached)": Hub.route,
        "input check": check_request,
        FORWARD: _forward,
        "log enqueue": PredictionLog.record,
        "metrics": Metrics.observe_prediction,
        "encode the reply": json.dumps,
    }


def _environ(body: bytes, token: str) -> dict:
    return {
        "HTTP_AUTHORIZATION": f"Bearer {token}",
        "REQUEST_METHOD": "POST", "PATH_INFO": f"/api/v1/models/{MODEL}/predict", "QUERY_STRING": "",
        "CONTENT_LENGTH": str(len(body)), "CONTENT_TYPE": "application/json",
        "wsgi.input": io.BytesIO(body),
    }  # fmt: skip


def _call(app, body: bytes, token: str) -> None:
    statuses = []
    app(_environ(body, token), lambda status, headers: statuses.append(status))
    if not statuses[0].startswith("200"):
        raise RuntimeError(f"The predict call failed: {statuses[0]}")


def _open_hub(home: Path):
    from hub.config import Config
    from hub.hub import Hub
    from tests.packages import archive

    env = {
        **cache_env(),
        "AIDHUB_RUNNER": "process",
        "AIDHUB_DATABASE_URL": f"sqlite:///{home}/hub.db",
        "AIDHUB_RATE_PREDICT": "1000000/s",
    }  # the limiter runs, never refuses
    hub = Hub(Config.load(env=env, home=home))
    hub.publish(archive(REPO / "examples" / MODEL))
    build = hub.deploy(MODEL)["build"]
    if hub.deployments.wait(build["id"]).status != "succeeded":
        hub.close()
        raise RuntimeError(f"{MODEL} did not deploy: see its build log in {home}/hub.db")
    return hub


def _per_call(stats: pstats.Stats, function) -> float:
    """`function`'s cumulative time in ms per predict call (0 when no call ran it)."""
    code = function.__code__
    key = (code.co_filename, code.co_firstlineno, code.co_name)
    return stats.stats[key][3] * 1000 / CALLS if key in stats.stats else 0.0


def _forward_ms(hub, inputs: dict) -> float:
    """The forward alone, unprofiled: the hub's client calling the model server, one at a time."""
    from hub.serving import _forward, check_request

    route = hub.route(MODEL)
    checked = check_request(route.version, inputs)
    started = time.perf_counter()
    for _ in range(CALLS):
        _forward(hub.client, route.url, route.version, checked, None)
    return (time.perf_counter() - started) * 1000 / CALLS


def _model_ms(inputs: dict) -> float:
    import numpy as np
    import onnxruntime as ort

    session = ort.InferenceSession(str(REPO / "examples" / MODEL / "model.onnx"))
    feed = {k: np.asarray(v, dtype=np.float32) for k, v in inputs.items()}
    started = time.perf_counter()
    for _ in range(CALLS):
        session.run(None, feed)
    return (time.perf_counter() - started) * 1000 / CALLS


def _profile(app, body: bytes, token: str) -> tuple[pstats.Stats, float]:
    """One call at a time with a token, as a script would: unprofiled (the total), then profiled."""
    for _ in range(200):
        _call(app, body, token)  # warm: the route and token caches, the client's pool, the server
    started = time.perf_counter()
    for _ in range(CALLS):
        _call(app, body, token)
    plain_ms = (time.perf_counter() - started) * 1000 / CALLS
    profiler = cProfile.Profile()
    profiler.enable()
    for _ in range(CALLS):
        _call(app, body, token)
    profiler.disable()
    return pstats.Stats(profiler), plain_ms


def run() -> list[dict]:
    from web.app import create_app

    inputs = json.loads((REPO / "examples" / MODEL / "examples.json").read_text())[0]["inputs"]
    body = json.dumps({"inputs": inputs}).encode()
    with tempfile.TemporaryDirectory(prefix="aidhub-bench-budget-") as folder:
        hub = _open_hub(Path(folder) / "home")
        try:
            token = (hub.config.home / "admin-token").read_text().strip()
            stats, plain_ms = _profile(create_app(hub=hub).wsgi_app, body, token)
            forward_ms = _forward_ms(hub, inputs)
        finally:
            hub.close()
    rows = [row(f"budget: {phase}", _per_call(stats, f), "ms") for phase, f in _phases().items()]
    return [
        *rows,
        row("budget: of the forward, the model itself", _model_ms(inputs), "ms"),
        row("budget: one call through the hub, unprofiled", plain_ms, "ms"),
        row("budget: the forward alone, unprofiled", forward_ms, "ms"),
        row("budget: the hub's own time per call", plain_ms - forward_ms, "ms", "<= 0.5"),
    ]
