"""The prediction path: resolve, check inputs, forward to the version's server, log off the path."""

from __future__ import annotations

import json
import time

import urllib3

from hub.errors import BadInput, ModelFailed
from hub.routes import Route
from monitor.metrics import Metrics
from monitor.predlog import PredictionLog, PredictionRecord, new_prediction_id
from registry.models import VersionRow
from registry.tensors import check_inputs

TIMEOUT = urllib3.Timeout(connect=2.0, read=60.0)


class ModelClient:
    """One pooled HTTP client for every model server the hub talks to."""

    def __init__(self, maxsize: int = 64):
        self.pool = urllib3.PoolManager(maxsize=maxsize, block=False, retries=False)

    def predict(self, url: str, inputs: dict) -> dict:
        body = json.dumps({"inputs": inputs}).encode()
        try:
            reply = self.pool.request(
                "POST",
                f"{url}/predict",
                body=body,
                headers={"Content-Type": "application/json"},
                timeout=TIMEOUT,
            )
        except urllib3.exceptions.HTTPError as e:
            raise ModelFailed(f"The model server at {url} did not answer: {e}. See 'aid logs'.") from e
        if reply.status != 200:
            detail = reply.data.decode(errors="replace")[:500]
            raise ModelFailed(f"The model failed (HTTP {reply.status} from its server): {detail}")
        return json.loads(reply.data)


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
