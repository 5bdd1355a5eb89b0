"""A soak: moderate mixed load on a real hub for 10 minutes; its memory stays flat (within 10%).

`run()` starts `aid serve` (process runner, SQLite in a new home) with the iris-onnx example published
and deployed, then for AIDHUB_SOAK_SECONDS (default 600) drives what real traffic looks like:
AIDHUB_SOAK_RATE predictions a second (default 150) from a few paced client threads, feedback on
every 10th prediction id, a v2 infer call every second, and the scorecard (API) and the model page
every few seconds. Every few seconds it reads VmRSS of the hub's gunicorn worker (the process that
serves; `aid serve` is its master). It reports the RSS after the warm-up (10% of the run) and at the
end, the prediction rate held, p50/p99 latency, 5xx and other failures, and the predictions lost:
those the client saw succeed that the scorecard does not count, once the prediction log has flushed.
A line on stderr each minute shows it is alive.
"""

from __future__ import annotations

import itertools
import os
import queue
import statistics
import sys
import threading
import time
from collections import Counter
from collections.abc import Callable
from pathlib import Path

import httpx

from benchmarks.publish import hub_worker
from benchmarks.serving import MODEL, deployed_hub, row
from tests.hubserver import HubProcess

SECONDS, RATE, CLIENTS = 600.0, 150.0, 4
FEEDBACK_EVERY, SAMPLE_EVERY, PROGRESS_EVERY = 10, 5.0, 60.0
V2_EVERY, SCORECARD_EVERY, PAGE_EVERY = 1.0, 5.0, 5.0
FLUSH_WAIT = 30.0
MIB = 1024**2
NO_FEEDBACK_LIMIT = {"AIDHUB_RATE_FEEDBACK": "0"}  # the soak's client is one client, like the predictions


class Tally:
    """What the clients saw: statuses by kind of call (0: no answer), predict latencies, the
    predictions that succeeded (API and v2), and ids waiting for feedback."""

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.statuses: Counter = Counter()
        self.latencies: list[float] = []
        self.predicted = 0
        self.feedback_ids: queue.Queue = queue.Queue()

    def add(self, kind: str, status: int, seconds: float | None = None) -> None:
        with self.lock:
            self.statuses[kind, status] += 1
            if kind in ("predict", "v2") and status == 200:
                self.predicted += 1
            if seconds is not None:
                self.latencies.append(seconds)

    def count(self, test: Callable[[str, int], bool]) -> int:
        with self.lock:
            return sum(n for (kind, status), n in self.statuses.items() if test(kind, status))


def _call(client: httpx.Client, method: str, url: str, **kwargs) -> tuple[httpx.Response | None, float]:
    started = time.perf_counter()
    try:
        reply = client.request(method, url, **kwargs)
    except httpx.TransportError:
        reply = None
    return reply, time.perf_counter() - started


def _features(i: int) -> list[float]:
    return [5.1 + (i % 5) / 5, 3.5 - (i % 3) / 4, 1.4 + (i % 11) / 2, 0.2 + (i % 7) / 3]


def _predictor(hub: HubProcess, tally: Tally, rate: float, stop: threading.Event, first: int) -> None:
    """Predictions at `rate` a second until `stop` (paced: late calls are not made up in a burst)."""
    url, interval, i = f"{hub.url}/api/v1/models/{MODEL}/predict", 1 / rate, first
    next_at = time.monotonic()
    with httpx.Client(timeout=30) as client:
        while not stop.is_set():
            reply, seconds = _call(client, "POST", url, json={"inputs": {"features": [_features(i)]}})
            status = reply.status_code if reply is not None else 0
            tally.add("predict", status, seconds)
            if status == 200 and i % FEEDBACK_EVERY == 0:
                tally.feedback_ids.put((i, reply.json()["id"]))
            i += CLIENTS
            next_at = max(next_at + interval, time.monotonic() - 1)
            stop.wait(max(0.0, next_at - time.monotonic()))


def _feedback(i: int) -> dict:
    """Mostly right, some wrong with the label it should have been, some rated or commented."""
    if i % 70 == 0:
        return {"correct": False, "label": "virginica", "comment": "soak: petals too long"}
    return {"correct": True, "rating": 1 + i % 5} if i % 30 == 0 else {"correct": True}


def _feedback_sender(hub: HubProcess, tally: Tally, stop: threading.Event) -> None:
    with httpx.Client(timeout=30) as client:
        while not (stop.is_set() and tally.feedback_ids.empty()):
            try:
                i, prediction_id = tally.feedback_ids.get(timeout=0.2)
            except queue.Empty:
                continue
            url = f"{hub.url}/api/v1/predictions/{prediction_id}/feedback"
            reply, _ = _call(client, "POST", url, json=_feedback(i))
            tally.add("feedback", reply.status_code if reply is not None else 0)


def _browser(hub: HubProcess, tally: Tally, stop: threading.Event) -> None:
    """A v2 infer call every V2_EVERY seconds; the scorecard and the model page every few seconds."""
    calls = [("v2", V2_EVERY, "POST", f"/v2/models/{MODEL}/infer"),
             ("scorecard", SCORECARD_EVERY, "GET", f"/api/v1/models/{MODEL}/scorecard"),
             ("page", PAGE_EVERY, "GET", f"/models/{MODEL}")]  # fmt: skip
    due = {kind: time.monotonic() + k for k, (kind, *_) in enumerate(calls)}
    with httpx.Client(timeout=30, base_url=hub.url) as client:
        for i in itertools.count():
            if stop.wait(max(0.0, min(due.values()) - time.monotonic())):
                return
            for kind, every, method, path in calls:
                if time.monotonic() >= due[kind]:
                    due[kind] += every
                    body = _v2_body(i) if kind == "v2" else None
                    reply, _ = _call(client, method, path, json=body)
                    tally.add(kind, reply.status_code if reply is not None else 0)


def _v2_body(i: int) -> dict:
    return {"inputs": [{"name": "features", "shape": [1, 4], "datatype": "FP32", "data": _features(i)}]}


def rss(pid: int) -> int:
    """VmRSS of `pid` in bytes."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) * 1024
    raise RuntimeError(f"no VmRSS for pid {pid}")


def _sample(worker: int, tally: Tally, seconds: float) -> list[tuple[float, int]]:
    """(seconds into the soak, worker RSS) every SAMPLE_EVERY s until `seconds`; a line each minute."""
    started, samples, next_line = time.monotonic(), [], PROGRESS_EVERY
    while (elapsed := time.monotonic() - started) < seconds:
        time.sleep(min(SAMPLE_EVERY, seconds - elapsed))
        samples.append((time.monotonic() - started, rss(worker)))
        if samples[-1][0] >= next_line or samples[-1][0] >= seconds:
            _progress(samples[-1], tally, seconds)
            next_line += PROGRESS_EVERY
    return samples


def _progress(sample: tuple[float, int], tally: Tally, seconds: float) -> None:
    at, size = sample
    failed = tally.count(lambda kind, status: status >= 500 or status == 0)
    done = tally.predicted
    print(f"soak: {at:4.0f}/{seconds:.0f} s, {done:,} predictions ({done / at:.0f}/s), {failed} 5xx or "
          f"unanswered, hub RSS {size / MIB:.1f} MiB", file=sys.stderr, flush=True)  # fmt: skip


def _soak(hub: HubProcess, seconds: float, rate: float) -> tuple[Tally, list[tuple[float, int]]]:
    tally, stop, worker = Tally(), threading.Event(), hub_worker(hub)
    threads = [threading.Thread(target=_predictor, args=(hub, tally, rate / CLIENTS, stop, k))
               for k in range(CLIENTS)]  # fmt: skip
    threads += [threading.Thread(target=f, args=(hub, tally, stop)) for f in (_feedback_sender, _browser)]
    for thread in threads:
        thread.start()
    try:
        samples = _sample(worker, tally, seconds)
    finally:
        stop.set()
        for thread in threads:
            thread.join(timeout=60)
    return tally, samples


def _counted(hub: HubProcess) -> int:
    """Successful calls of MODEL in the scorecard (last 24 h)."""
    card = httpx.get(f"{hub.url}/api/v1/models/{MODEL}/scorecard", timeout=30).json()
    return card["requests"] - card["errors"]


def _lost(hub: HubProcess, before: int, predicted: int) -> int:
    """Predictions the client saw succeed that the scorecard does not count, after up to FLUSH_WAIT s."""
    deadline = time.monotonic() + FLUSH_WAIT
    while (counted := _counted(hub) - before) < predicted and time.monotonic() < deadline:
        time.sleep(0.5)
    return predicted - counted


def _rows(tally: Tally, samples: list[tuple[float, int]], seconds: float, rate: float, lost: int) -> list:
    start_at, start = next((at, size) for at, size in samples if at >= seconds / 10)
    end, peak = samples[-1][1], max(size for _, size in samples)
    ms = sorted(s * 1000 for s in tally.latencies)
    p99 = ms[min(len(ms) - 1, int(len(ms) * 0.99))]
    held = tally.count(lambda kind, status: kind == "predict" and status == 200) / seconds
    server = tally.count(lambda kind, status: status >= 500)
    other = tally.count(lambda kind, status: status < 500 and (status == 0 or status >= 400))
    feedback = tally.count(lambda kind, status: kind == "feedback" and status == 201)
    return [
        row(f"soak {seconds / 60:g} min: predict calls/s held (asked {rate:g})", held, "req/s",
            f">= {rate * 0.95:g}"),
        row("soak: predict p50 / p99", f"{statistics.median(ms):.1f} / {p99:.1f}", "ms"),
        row(f"soak: hub RSS at {start_at:.0f} s / at the end", f"{start / MIB:.1f} / {end / MIB:.1f}", "MiB"),
        row(f"soak: hub RSS peak (samples every {SAMPLE_EVERY:g} s)", peak / MIB, "MiB"),
        row("soak: hub RSS end / start", end / start, "", "<= 1.10"),
        row("soak: responses >= 500", server, "", "0"),
        row("soak: other failures (4xx, no answer)", other, "", "0"),
        row("soak: feedback recorded", feedback, ""),
        row("soak: lost predictions (client 200s - scorecard)", lost, "", "0"),
    ]  # fmt: skip


def run(seconds: float | None = None, rate: float | None = None) -> list[dict]:
    seconds = seconds or float(os.environ.get("AIDHUB_SOAK_SECONDS", SECONDS))
    rate = rate or float(os.environ.get("AIDHUB_SOAK_RATE", RATE))
    with deployed_hub(NO_FEEDBACK_LIMIT) as hub:
        before = _counted(hub)
        tally, samples = _soak(hub, seconds, rate)
        lost = _lost(hub, before, tally.predicted)
    return _rows(tally, samples, seconds, rate, lost)
