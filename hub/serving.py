"""The prediction path: resolve, check inputs, forward to the version's server, log off the path."""

from __future__ import annotations

import json
import threading
import time
from http.client import HTTPException

import numpy as np
import orjson
from gevent import monkey
from geventhttpclient import HTTPClient

from hub.batcher import Batcher
from hub.errors import BadInput, ModelFailed
from hub.routes import Route
from monitor.metrics import Metrics
from monitor.predlog import JSONText, PredictionLog, PredictionRecord
from monitor.shadows import shadow_id
from registry.batching import batching_settings
from registry.models import VersionRow
from registry.package import check_example_outputs
from registry.tensors import check_inputs, fitting_arrays, numbers_only, without_bools
from runners.flavors import tensorbody
from runners.flavors.calls import COLLECT_ROUTE, TOKEN_HEADER, new_prediction_id  # ids: no system call

JSON_HEADERS = {"Content-Type": "application/json"}
INPUTS_HEAD = b'{"inputs":'  # how a predict body starts when its inputs' text is logged as it came


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
        self.json_only: set[str] = set()  # servers started before the tensor route existed
        self.batchers: dict[str, tuple[int, Batcher | None]] = {}  # server: (version id, its batcher)
        self.on_batch = None  # on_batch(model, version, calls) for each batch sent (1: a call alone)

    def _pool(self, url: str) -> HTTPClient:
        pools = self.shared if self.shared is not None else self.local.__dict__.setdefault("pools", {})
        pool = pools.get(url)
        if pool is None:
            pool = pools[url] = HTTPClient.from_url(
                url, concurrency=self.concurrency, connection_timeout=2.0, network_timeout=60.0
            )
        return pool

    def predict(self, url: str, inputs: dict, body: bytes | None = None) -> dict:
        """`body`: the caller's JSON `{"inputs": ...}` as it came, forwarded without re-encoding."""
        body = json.dumps({"inputs": inputs}).encode() if body is None else body
        return self._answer(*self._post(url, "/predict", body, self.headers))

    def predict_tensors(self, url: str, arrays: dict) -> dict:
        """Numpy `arrays` as raw bytes (runners/flavors/tensorbody.py), not as JSON lists."""
        if url in self.json_only:
            return self.predict(url, {name: a.tolist() for name, a in arrays.items()})
        body, length = tensorbody.encode(arrays)
        headers = {**self.headers, tensorbody.HEADER_LENGTH: str(length)}
        status, data = self._post(url, tensorbody.PREDICT_ROUTE, body, headers)
        if status == 404:  # an older server, adopted across a hub upgrade
            self.json_only.add(url)
            return self.predict_tensors(url, arrays)
        return self._answer(status, data)

    def predict_batched(self, url: str, version: VersionRow, arrays: dict) -> dict:
        """`predict_tensors`, joined with concurrent calls when the version's manifest turns batching
        on (hub/batcher.py)."""
        held = self.batchers.get(url)
        if held is None or held[0] != version.id:  # a new server, or another version on its port
            held = self.batchers[url] = (version.id, self._batcher(url, version))
        return held[1](arrays) if held[1] is not None else self.predict_tensors(url, arrays)

    def _batcher(self, url: str, version: VersionRow) -> Batcher | None:
        settings = batching_settings(version.manifest.get("batching"))
        if not settings["enabled"]:
            return None
        model, number, on_batch = version.model.name, version.version, self.on_batch
        return Batcher(
            lambda arrays: self.predict_tensors(url, arrays), list(version.inputs),
            settings["max_batch_size"], settings["max_latency_ms"],
            on_batch and (lambda calls: on_batch(model, number, calls)),
        )  # fmt: skip

    def _post(self, url: str, path: str, body: bytes, headers: dict) -> tuple[int, bytes]:
        try:
            reply = self._pool(url).post(path, body, headers)
            return reply.status_code, reply.read()
        except (OSError, HTTPException) as e:
            raise ModelFailed(f"The model server at {url} did not answer: {e}. See 'aid logs'.") from e

    @staticmethod
    def _answer(status: int, data: bytes) -> dict:
        if status != 200:
            detail = data.decode(errors="replace")[:500]
            raise ModelFailed(f"The model failed (HTTP {status} from its server): {detail}")
        return json.loads(data)

    def direct_calls(self, url: str, ack: dict[str, int], limit: int) -> bytes:
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
        return data


def native_thread():
    """Under gevent (`aid serve`): a function that runs its argument on one native thread and waits
    for it cooperatively, so the event loop serves calls while a database write runs; else None
    (a plain thread runs the write itself)."""
    if not monkey.is_module_patched("threading"):
        return None
    from gevent.threadpool import ThreadPool

    return ThreadPool(1).apply


def smoke_test(client: ModelClient, version: VersionRow, url: str, log) -> None:
    """Run the package's examples against a fresh server; raise ModelFailed on a wrong answer."""
    for i, example in enumerate(version.examples or []):
        problems = check_example_outputs(example, client.predict(url, example["inputs"]))
        if problems:
            raise ModelFailed(f"Smoke test: examples[{i}] gave a different answer: {'; '.join(problems)}")
        log(f"smoke test: examples[{i}] ok")


def check_request(version: VersionRow, inputs, body: bytes | None = None) -> dict:
    """The inputs to forward: numpy arrays in the schema's dtypes when numpy proves they fit (checked
    in C), else the inputs as they came, checked value by value; BadInput naming every problem."""
    numbers = body is not None and isinstance(inputs, dict) and numbers_only(body, len(inputs))
    bools_ruled_out = numbers or (body is not None and without_bools(body))
    arrays = fitting_arrays(inputs, version.inputs, bools_ruled_out, numbers)
    if arrays is not None:
        return arrays
    problems = check_inputs(inputs, version.inputs, bools_ruled_out)
    if problems:
        name = f"{version.model.name}@{version.version}"
        raise BadInput(f"The inputs do not fit {name}'s schema; the model was not called.", problems)
    return inputs


def predict(
    client: ModelClient,
    predlog: PredictionLog,
    metrics: Metrics,
    route: Route,
    inputs: dict,
    source: str = "hub",
    body: bytes | None = None,
    mirror=None,
) -> dict:
    """Call the model, log the prediction (ok or failed), and return the native reply.
    `mirror(route, inputs, body, pid)`, when given, is told of every call the model was asked, after
    it answered: it copies the call to a shadow version off the request path (hub/shadow.py).

    `inputs` hold nested lists or numpy arrays (binary inputs); `body` is the request's JSON text
    when it is exactly `{"inputs": ...}`. Inputs that numpy read go to the server as raw bytes
    (a 3 MB JSON image as 602 KB, which the server need not parse either); a Python model gets
    the body as it came, or JSON lists."""
    version = route.version
    checked = check_request(version, inputs, body)
    if route.error:
        raise route.error
    pid, started = new_prediction_id(), time.perf_counter()
    outputs, error = None, None
    try:
        outputs = _forward(client, route.url, version, checked, body)
    except ModelFailed as e:
        error = e
    latency_ms = (time.perf_counter() - started) * 1000
    logged = _loggable(inputs, body, predlog.payload_cap, checked)
    answer = outputs and _numbers_text(outputs)  # iris's outputs: 0.6 us by orjson, 3.1 by the log's encoder
    predlog.record(_record(pid, version, latency_ms, logged, answer, error, source))
    metrics.observe_prediction(version.model.name, version.version, "error" if error else "ok", latency_ms)
    if mirror is not None:
        mirror(route, inputs, body, pid)
    if error:
        raise error
    reply = {"id": pid, "model": version.model.name, "version": version.version, "outputs": outputs}
    return {**reply, "latency_ms": round(latency_ms, 3)}


def shadow_call(
    client: ModelClient, predlog: PredictionLog, route: Route, inputs: dict, body: bytes | None, pid: str
) -> bool:
    """Send a copy of live call `pid` to the shadow version `route` leads to and log its answer, never
    returned, as source 'shadow' under the id monitor.shadows.shadow_id gives (without the inputs,
    which the live call's row holds); False when it failed
    (inputs that do not fit its schema, a version that does not serve, an error, no answer)."""
    version, started, outputs, error = route.version, time.perf_counter(), None, route.error
    if error is None:
        try:
            outputs = _forward(client, route.url, version, check_request(version, inputs, body), body)
        except (BadInput, ModelFailed) as e:
            error = e
    latency_ms = (time.perf_counter() - started) * 1000
    # The inputs are stored once, with the live call (the pair joins on the id): not encoded again.
    predlog.record(_record(shadow_id(pid), version, latency_ms, None, outputs, error, "shadow"))
    return error is None


def _forward(client: ModelClient, url: str, version: VersionRow, inputs: dict, body: bytes | None) -> dict:
    """Arrays go to the server as raw bytes, except to a Python model (its own code was written for
    the lists JSON gives it): it gets the body as it came, or the inputs as JSON."""
    arrays = all(isinstance(v, np.ndarray) for v in inputs.values())
    if arrays and version.manifest.get("framework") != "python":
        return client.predict_batched(url, version, inputs)
    if body is not None:
        return client.predict(url, inputs, body)  # the body wins: sent as it came
    return client.predict(url, _as_lists(inputs))


def _as_lists(inputs: dict) -> dict:
    return {n: v.tolist() if isinstance(v, np.ndarray) else v for n, v in inputs.items()}


def _loggable(inputs: dict, body: bytes | None, cap: int, checked: dict | None = None):
    """The inputs as the prediction log stores them. A payload surely past the log's cap becomes its
    marker here, before 3 MB of JSON is encoded (or an array turned into lists) only to be dropped:
    a body over twice the cap, or arrays of more than cap / 2 values (each at least "0," in JSON).
    The marker's bytes are the body's, or the arrays' raw bytes. Numbers that numpy proved fit
    (`checked` all arrays: JSON lists or binary tensors) are encoded by orjson: 0.1 ms for 3,072
    floats against 1 ms."""
    arrays = [v for v in inputs.values() if isinstance(v, np.ndarray)]
    if body is not None and len(body) > 2 * cap:
        return _Cut(json.dumps({"_truncated": True, "bytes": len(body)}))
    if sum(a.size for a in arrays) * 2 > cap:
        return _Cut(json.dumps({"_truncated": True, "bytes": sum(a.nbytes for a in arrays)}))
    if checked and all(isinstance(v, np.ndarray) for v in checked.values()):
        return _inputs_text(body, len(inputs)) or _arrays_text(inputs)
    return _as_lists(inputs)


def _inputs_text(body: bytes | None, names: int) -> JSONText | None:
    """The inputs' JSON text as the caller wrote it, cut from a body `{"inputs": {...}}` that starts
    that way and holds no string but its 1 + `names` keys (so no key twice): 1 us for heavy-onnx's
    12 KB, against 39 us to encode the parsed lists again. None for any other body."""
    raw = body.strip() if body is not None else b""
    if not raw.startswith(INPUTS_HEAD) or raw.count(b'"') != 2 * (1 + names):
        return None
    return JSONText(raw[len(INPUTS_HEAD) : -1].strip().decode())


def _arrays_text(inputs: dict):
    """Inputs that numpy proved fit (nested lists, or arrays: v2 and .npy calls) as JSON text by
    orjson, which writes arrays itself: 74 us for heavy-onnx's 3,072 float32 against 100 through
    lists; a float32 as its shortest text (0.1, not 0.10000000149011612: the same float32)."""
    try:
        text = orjson.dumps(inputs, option=orjson.OPT_SERIALIZE_NUMPY)
    except TypeError:  # an array not laid out in C order, an integer past 64 bits
        return _numbers_text(_as_lists(inputs))
    return _as_lists(inputs) if b"null" in text else JSONText(text.decode())


def _numbers_text(values: dict):
    """Inputs or outputs (lists of JSON numbers or text) as JSON text by orjson, the same values as
    the standard library's text (its shortest round-trip floats; 1e-05 may read 0.00001). orjson
    writes NaN and Infinity as null, and refuses integers past 64 bits: those stay as they are, for
    the log's encoder."""
    try:
        text = orjson.dumps(values)
    except TypeError:  # orjson.JSONEncodeError
        return values
    return values if b"null" in text else JSONText(text.decode())


class _Cut(JSONText):
    """A payload already replaced by the log's marker."""


def _record(pid, version, latency_ms, inputs, outputs, error, source) -> PredictionRecord:
    return PredictionRecord(
        id=pid, version_id=version.id, model=version.model.name, version=version.version,
        latency_ms=latency_ms, status="error" if error else "ok", error=str(error) if error else None,
        source=source, inputs=inputs, outputs=outputs, truncated=isinstance(inputs, _Cut),
    )  # fmt: skip
