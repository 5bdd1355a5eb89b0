"""Prometheus metrics of the hub, on a registry of their own (not the process-global one).

A hub with several web workers (`aid serve --workers N`) counts in several processes. There
prometheus_client's multiprocess mode is on (PROMETHEUS_MULTIPROC_DIR, set by `aid serve` before this
library is imported): each process writes its values to files in that folder, and a scrape sums the
files of every process, the dead ones' counters included. The gauges a function gave (log queue,
drops) are then set by every process every second (`refresh`) and summed over the live processes;
the state read from the database at scrape time is added by the scraping process only.
"""

from __future__ import annotations

from collections import Counter as Tally
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass

from prometheus_client import (
    CONTENT_TYPE_LATEST,
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    generate_latest,
)
from prometheus_client.core import GaugeMetricFamily
from prometheus_client.multiprocess import MultiProcessCollector

from monitor.rollups import OVERFLOW, bucket_range

LATENCY_BUCKETS_S = (
    0.001,
    0.0025,
    0.005,
    0.01,
    0.025,
    0.05,
    0.1,
    0.25,
    0.5,
    1.0,
    2.5,
    5.0,
    10.0,
    30.0,
    60.0,
)


def latency_counts(histogram: Mapping[int, int]) -> list[int]:
    """Calls per histogram bucket (LATENCY_BUCKETS_S, then +Inf) from a rollup latency histogram
    (rollups.BOUNDS_MS indexes). A rollup bucket across a bound is split in proportion, as the
    scorecard's percentiles assume its calls spread; whole calls, the total kept exactly."""
    below: list[int] = []  # calls at or under each bound
    for bound in (s * 1000.0 for s in LATENCY_BUCKETS_S):
        calls = 0.0
        for bucket, count in histogram.items():
            lower, upper = bucket_range(bucket)
            if bucket != OVERFLOW and upper <= bound:
                calls += count
            elif bucket != OVERFLOW and lower < bound:
                calls += count * (bound - lower) / (upper - lower)
        below.append(round(calls))
    below.append(sum(histogram.values()))
    return [now - before for before, now in zip([0, *below], below, strict=False)]


BATCH_BUCKETS = (1, 2, 4, 8, 16, 32, 64, 128, 256, 1024, 4096)  # calls; 4096: registry MAX_BATCH_SIZE
BUILD_BUCKETS_S = (1.0, 2.0, 5.0, 10.0, 20.0, 30.0, 60.0, 120.0, 300.0, 600.0, 1800.0)


@dataclass(frozen=True)
class VersionState:
    """What a scrape reports of one deployed version."""

    model: str
    version: str
    up: bool  # its server is ready
    accuracy: float | None  # feedback accuracy (point estimate), None before any judged feedback
    accuracy_low: float | None  # the Wilson 95% lower bound of it


class _VersionCollector:
    def __init__(self, read: Callable[[], Iterable[VersionState]]):
        self.read = read

    def collect(self):
        up = GaugeMetricFamily("aidhub_deployment_up", "1 when the version's server is ready.",
                               labels=["model", "version"])  # fmt: skip
        accuracy = GaugeMetricFamily("aidhub_accuracy_ratio", "Feedback accuracy, point estimate.",
                                     labels=["model", "version"])  # fmt: skip
        low = GaugeMetricFamily("aidhub_accuracy_lower_bound_ratio", "Wilson 95% lower bound of accuracy.",
                                labels=["model", "version"])  # fmt: skip
        for state in self.read():
            labels = [state.model, state.version]
            up.add_metric(labels, 1.0 if state.up else 0.0)
            if state.accuracy is not None:
                accuracy.add_metric(labels, state.accuracy)
                low.add_metric(labels, state.accuracy_low)
        yield from (up, accuracy, low)


class Metrics:
    """The hub's counters, histogram and gauges; `render()` gives the /metrics body."""

    def __init__(self, registry: CollectorRegistry | None = None, shared: str = ""):
        """`shared`: the folder of prometheus_client's multiprocess mode (PROMETHEUS_MULTIPROC_DIR,
        hub/config.py `metrics_dir`) when several processes serve the hub, else ""."""
        self.registry = registry or CollectorRegistry()
        self.shared = shared
        self.read_at_scrape: list = []  # collectors over the database: the scraping process adds them
        self.sampled: list[tuple[Gauge, Callable[[], float]]] = []  # gauges `refresh` sets
        r = self.registry
        self.predictions = Counter(
            "aidhub_predictions",
            "Predictions served, through the hub or straight to a model's server.",
            ["model", "version", "status", "source"],
            registry=r,
        )
        self.latency = Histogram(
            "aidhub_prediction_latency_seconds",
            "Prediction latency.",
            ["model", "version"],
            buckets=LATENCY_BUCKETS_S,
            registry=r,
        )
        self.feedback = Counter(
            "aidhub_feedback", "Feedback received.", ["model", "version", "correct"], registry=r
        )
        self.builds = Histogram(
            "aidhub_build_duration_seconds",
            "Builds, queued to ready (or failed, or cancelled).",
            ["model", "version", "status"],
            buckets=BUILD_BUCKETS_S,
            registry=r,
        )
        self.batches = Histogram(
            "aidhub_batch_calls",
            "Calls the hub joined into one call to a model's server (manifest `batching:` on).",
            ["model", "version"],
            buckets=BATCH_BUCKETS,
            registry=r,
        )
        self._watch_gauges(r)

    def _watch_gauges(self, r: CollectorRegistry) -> None:
        version = ["model", "version"]
        self.drift_share = Gauge(
            "aidhub_drift_share_ratio",
            "Share of a version's input columns that drifted in its latest drift run.",
            version,
            registry=r,
            multiprocess_mode="mostrecent",  # the latest run's, whichever process ran it
        )
        self.drift_columns = Gauge(
            "aidhub_drift_columns_drifted", "Input columns that drifted in its latest drift run.", version,
            registry=r, multiprocess_mode="mostrecent",
        )  # fmt: skip
        self.queue = Gauge(
            "aidhub_prediction_log_queue", "Predictions waiting to be written to the log.", registry=r,
            multiprocess_mode="livesum",
        )  # fmt: skip
        self.dropped = Gauge(
            "aidhub_prediction_log_dropped",
            "Predictions dropped from a full log queue since start.",
            registry=r,
            multiprocess_mode="livesum",
        )

    def observe_prediction(
        self, model: str, version: str, status: str, latency_ms: float, source: str = "hub"
    ) -> None:
        self.predictions.labels(model, version, status, source).inc()
        self.latency.labels(model, version).observe(latency_ms / 1000.0)

    def observe_predictions(
        self, model: str, version: str, source: str, calls: list[tuple[str, float]]
    ) -> None:
        """Many calls of one version at once: (status, latency in ms) each."""
        for status, count in Tally(status for status, _ in calls).items():
            self.predictions.labels(model, version, status, source).inc(count)
        latency = self.latency.labels(model, version)
        for _, latency_ms in calls:
            latency.observe(latency_ms / 1000.0)

    def seed(
        self, model: str, version: str, totals: Mapping[str, float], latency: Mapping[int, int] | None = None
    ) -> None:
        """Continue a version's counters from its all-time rollup totals, and its latency histogram from
        its all-time rollup histogram `latency` (at start, in one process only: see hub/scrape.py)."""
        if latency:
            self._seed_latency(model, version, latency, totals["latency_sum_ms"])
        direct, direct_errors = totals["direct"], totals["direct_errors"]
        hub, hub_errors = totals["requests"] - direct, totals["errors"] - direct_errors
        unjudged = totals["feedback"] - totals["correct"] - totals["incorrect"]
        for source, status, count in (
            ("hub", "ok", hub - hub_errors), ("hub", "error", hub_errors),
            ("direct", "ok", direct - direct_errors), ("direct", "error", direct_errors),
        ):  # fmt: skip
            if count > 0:
                self.predictions.labels(model, version, status, source).inc(count)
        verdicts = (("true", totals["correct"]), ("false", totals["incorrect"]), ("unknown", unjudged))
        for verdict, count in verdicts:
            if count > 0:
                self.feedback.labels(model, version, verdict).inc(count)

    def _seed_latency(self, model: str, version: str, latency: Mapping[int, int], sum_ms: float) -> None:
        # prometheus_client has no call that adds many observations at once; observe() is per value,
        # and a million calls to replay would slow the start. So its per-bucket values are added to, as
        # observe() does one at a time (in multiprocess mode they are this process's files, as there).
        child = self.latency.labels(model, version)
        for value, count in zip(child._buckets, latency_counts(latency), strict=True):
            if count:
                value.inc(count)
        child._sum.inc(sum_ms / 1000.0)

    def observe_batch(self, model: str, version: str, calls: int) -> None:
        self.batches.labels(model, version).observe(calls)

    def observe_feedback(self, model: str, version: str | None, correct: bool | None) -> None:
        verdict = "unknown" if correct is None else str(correct).lower()
        self.feedback.labels(model, version or "", verdict).inc()

    def observe_build(self, model: str, version: str, status: str, seconds: float) -> None:
        self.builds.labels(model, version, status).observe(seconds)

    def watch_versions(self, read: Callable[[], Iterable[VersionState]]) -> None:
        """Read each deployed version's state at scrape time (`aidhub_deployment_up`, accuracy)."""
        self._read_at_scrape(_VersionCollector(read))

    def _read_at_scrape(self, collector) -> None:
        self.registry.register(collector)
        self.read_at_scrape.append(collector)

    def watch_alerts(self, read: Callable[[], Iterable[tuple[str, str, int]]]) -> None:
        """`aidhub_alerts_firing{model,version}`: alert rules firing per version, read at scrape time from
        (model, version, firing) triples."""

        class Firing:
            def collect(self):
                family = GaugeMetricFamily("aidhub_alerts_firing", "Alert rules firing for the version.",
                                           labels=["model", "version"])  # fmt: skip
                for model, version, firing in read():
                    family.add_metric([model, version], float(firing))
                yield family

        self._read_at_scrape(Firing())

    def observe_drift(self, model: str, version: str, share: float | None, drifted: int) -> None:
        """A finished drift run; a run without a verdict (too little data) leaves the share unset."""
        if share is not None:
            self.drift_share.labels(model, version).set(share)
        self.drift_columns.labels(model, version).set(drifted)

    def watch_log(self, queued: Callable[[], float], dropped: Callable[[], float]) -> None:
        """Read the gauges at scrape time, e.g. `watch_log(lambda: log.queued, lambda: log.dropped)`."""
        self._sample(self.queue, queued)
        self._sample(self.dropped, dropped)

    def watch_direct_calls(self, dropped: Callable[[], float]) -> None:
        """Read at scrape time how many direct calls the model servers dropped (buffer full)."""
        gauge = Gauge(
            "aidhub_direct_calls_dropped",
            "Calls made straight to model servers that they dropped before the hub collected them.",
            registry=self.registry,
            multiprocess_mode="livesum",
        )
        self._sample(gauge, dropped)

    def _sample(self, gauge: Gauge, read: Callable[[], float]) -> None:
        """One process: read at scrape time. Several: `refresh` writes the value for the others."""
        self.sampled.append((gauge, read))
        if not self.shared:
            gauge.set_function(read)

    def refresh(self) -> None:
        """Write this process's sampled gauges to its multiprocess files (every second, and at a scrape)."""
        for gauge, read in self.sampled:
            gauge.set(read())

    def render(self) -> tuple[bytes, str]:
        """(body, content type) of the Prometheus text exposition."""
        if not self.shared:
            return generate_latest(self.registry), CONTENT_TYPE_LATEST
        self.refresh()
        registry = CollectorRegistry(auto_describe=False)
        MultiProcessCollector(registry, self.shared)
        for collector in self.read_at_scrape:
            registry.register(collector)
        return generate_latest(registry), CONTENT_TYPE_LATEST
