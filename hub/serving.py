"""The prediction path: resolve, check inputs, forward to the version's server, log off the path."""

from __future__ import annotations

import json
import threading
import time
from http.client import HTTPException

from gevent import monkey
from geventhttpclient import HTTPClient

from hub.errors import BadInput, ModelFailed
from hub.routes import Route
from monitor.metrics import Metrics
from monitor.predlog import PredictionLog, PredictionRecord, new_prediction_id
from registry.models import VersionRow
from registry.package import check_example_outputs
from registry.tensors import check_inputs
from runners.flavors.calls import COLLECT_ROUTE, TOKEN_HEADER

JSON_HEADERS = {"Content-Type": "application/json"}


class ModelClient:
    """Pooled keep-alive HTTP clients for the model servers (geventhttpclient: a C parser on gevent).

    Under `aid serve` the process is gevent-patched and one pool per server is shared by every request;
    in a threaded process (tests, scripts) each thread keeps its own pools, since gevent objects belong
    to the thread that made them."""

    def __init__(self, concurrency: int = 64, token: str = ""):
        self.concurrency = concurrency
        self.headers = {**JSON_HEADERS, TOKEN_HEADER: token}  # the server leaves calls with it to us
        self.shared: dict | None = {} if monkey.is_module_patched("socket") else None
        self.local = threading.local()

    def _pool(self, url: str) -> HTTPClient:
        pools = self.shared if self.shared is not None else self.local.__dict__.setdefault("pools", {})
        pool = pools.get(url)
        if pool is None:
            pool = pools[url] = HTTPClient.from_url(
                url, concurrency=self.concurrency, connection_timeout=2.0, network_timeout=60.0
            )
        return pool

    def predict(self, url: str, inputs: dict) -> dict:
        try:
            reply = self._pool(url).post("/predict", json.dumps({"inputs": inputs}).encode(), self.headers)
            data = reply.read()
        except (OSError, HTTPException) as e:
            raise ModelFailed(f"The model server at {url} did not answer: {e}. See 'aid logs'.") from e
        if reply.status_code != 200:
            detail = data.decode(errors="replace")[:500]
            raise ModelFailed(f"The model failed (HTTP {reply.status_code} from its server): {detail}")
        return json.loads(data)

    def direct_calls(self, url: str, ack: dict[str, int], limit: int) -> str:
        """The calls made straight to the server at `url` that it still holds (acknowledging `ack`),
        as runners.flavors.calls.CallBuffer.take wrote them."""
        headers = {**JSON_HEADERS, "Authorization": f"Bearer {self.headers[TOKEN_HEADER]}"}
        body = json.dumps({"ack": ack, "limit": limit}).encode()
        try:
            reply = self._pool(url).post(COLLECT_ROUTE, body, headers)
            data = reply.read()
        except (OSError, HTTPException) as e:
            raise ModelFailed(f"The model server at {url} did not answer: {e}") from e
        if reply.status_code != 200:
            raise ModelFailed(f"{url}{COLLECT_ROUTE} answered HTTP {reply.status_code}: {data[:200]!r}")
        return data.decode()


def smoke_test(client: ModelClient, version: VersionRow, url: str, log) -> None:
    """Run the package's examples against a fresh server; raise ModelFailed on a wrong answer."""
    for i, example in enumerate(version.examples or []):
        problems = check_example_outputs(example, client.predict(url, example["inputs"]))
        if problems:
            raise ModelFailed(f"Smoke test: examples[{i}] gave a different answer: {'; '.join(problems)}")
        log(f"smoke test: examples[{i}] ok")


def check_request(version: VersionRow, inputs) -> None:
    problems = check_inputs(inputs, version.inputs)
    if problems:
        name = f"{version.model.name}@{version.version}"
        raise BadInput(f"The inputs do not fit {name}'s schema; the model was not called.", problems)


def predict(
    client: ModelClient,
    predlog: PredictionLog,
    metrics: Metrics,
    route: Route,
    inputs: dict,
    source: str = "hub",
) -> dict:
    """Call the model, log the prediction (ok or failed), and return the native reply."""
    version = route.version
    check_request(version, inputs)
    if route.error:
        raise route.error
    pid, started = new_prediction_id(), time.perf_counter()
    outputs, error = None, None
    try:
        outputs = client.predict(route.url, inputs)
    except ModelFailed as e:
        error = e
    latency_ms = (time.perf_counter() - started) * 1000
    predlog.record(_record(pid, version, latency_ms, inputs, outputs, error, source))
    metrics.observe_prediction(version.model.name, version.version, "error" if error else "ok", latency_ms)
    if error:
        raise error
    reply = {"id": pid, "model": version.model.name, "version": version.version, "outputs": outputs}
    return {**reply, "latency_ms": round(latency_ms, 3)}


def _record(pid, version, latency_ms, inputs, outputs, error, source) -> PredictionRecord:
    return PredictionRecord(
        id=pid, version_id=version.id, model=version.model.name, version=version.version,
        latency_ms=latency_ms, status="error" if error else "ok", error=str(error) if error else None,
        source=source, inputs=inputs, outputs=outputs,
    )  # fmt: skip
