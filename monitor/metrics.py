"""Prometheus metrics of the hub, on a registry of their own (not the process-global one)."""

from __future__ import annotations

from collections.abc import Callable

from prometheus_client import (
    CONTENT_TYPE_LATEST,
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    generate_latest,
)

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


class Metrics:
    """The hub's counters, histogram and gauges; `render()` gives the /metrics body."""

    def __init__(self, registry: CollectorRegistry | None = None):
        self.registry = registry or CollectorRegistry()
        r = self.registry
        self.predictions = Counter(
            "aidhub_predictions", "Predictions served.", ["model", "version", "status"], registry=r
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
        self.drift_share = Gauge(
            "aidhub_drift_share_ratio",
            "Share of a version's input columns that drifted in its latest drift run.",
            ["model", "version"],
            registry=r,
        )
        self.drift_columns = Gauge(
            "aidhub_drift_columns_drifted",
            "Input columns that drifted in a version's latest drift run.",
            ["model", "version"],
            registry=r,
        )
        self.queue = Gauge(
            "aidhub_prediction_log_queue", "Predictions waiting to be written to the log.", registry=r
        )
        self.dropped = Gauge(
            "aidhub_prediction_log_dropped",
            "Predictions dropped from a full log queue since start.",
            registry=r,
        )

    def observe_prediction(self, model: str, version: str, status: str, latency_ms: float) -> None:
        self.predictions.labels(model, version, status).inc()
        self.latency.labels(model, version).observe(latency_ms / 1000.0)

    def observe_feedback(self, model: str, version: str | None, correct: bool | None) -> None:
        verdict = "unknown" if correct is None else str(correct).lower()
        self.feedback.labels(model, version or "", verdict).inc()

    def observe_drift(self, model: str, version: str, share: float | None, drifted: int) -> None:
        """A finished drift run; a run without a verdict (too little data) leaves the share unset."""
        if share is not None:
            self.drift_share.labels(model, version).set(share)
        self.drift_columns.labels(model, version).set(drifted)

    def watch_log(self, queued: Callable[[], float], dropped: Callable[[], float]) -> None:
        """Read the gauges at scrape time, e.g. `watch_log(lambda: log.queued, lambda: log.dropped)`."""
        self.queue.set_function(queued)
        self.dropped.set_function(dropped)

    def render(self) -> tuple[bytes, str]:
        """(body, content type) of the Prometheus text exposition."""
        return generate_latest(self.registry), CONTENT_TYPE_LATEST
