"""Prometheus metrics on the monitor's own registry."""

from collections import Counter

import prometheus_client
import pytest

from monitor.metrics import LATENCY_BUCKETS_S, Metrics, VersionState, latency_counts
from monitor.rollups import OVERFLOW, bucket_of, bucket_range


def lines(metrics: Metrics) -> list[str]:
    body, _ = metrics.render()
    return body.decode().splitlines()


def test_predictions_are_counted_by_model_version_and_status():
    metrics = Metrics()
    metrics.observe_prediction("iris", "1.0.0", "ok", 12.0)
    metrics.observe_prediction("iris", "1.0.0", "ok", 30.0)
    metrics.observe_prediction("iris", "1.0.0", "error", 2000.0)
    text = lines(metrics)
    assert 'aidhub_predictions_total{model="iris",source="hub",status="ok",version="1.0.0"} 2.0' in text
    assert 'aidhub_predictions_total{model="iris",source="hub",status="error",version="1.0.0"} 1.0' in text
    assert 'aidhub_prediction_latency_seconds_count{model="iris",version="1.0.0"} 3.0' in text
    assert 'aidhub_prediction_latency_seconds_bucket{le="0.025",model="iris",version="1.0.0"} 1.0' in text
    assert 'aidhub_prediction_latency_seconds_sum{model="iris",version="1.0.0"} 2.042' in text


def test_feedback_is_counted_by_verdict():
    metrics = Metrics()
    metrics.observe_feedback("iris", "1.0.0", True)
    metrics.observe_feedback("iris", "1.0.0", False)
    metrics.observe_feedback("iris", None, None)
    text = lines(metrics)
    assert 'aidhub_feedback_total{correct="true",model="iris",version="1.0.0"} 1.0' in text
    assert 'aidhub_feedback_total{correct="false",model="iris",version="1.0.0"} 1.0' in text
    assert 'aidhub_feedback_total{correct="unknown",model="iris",version=""} 1.0' in text


def test_log_gauges_are_read_at_scrape_time():
    metrics = Metrics()
    waiting = [3]
    metrics.watch_log(lambda: waiting[0], lambda: 7)
    assert "aidhub_prediction_log_queue 3.0" in lines(metrics)
    waiting[0] = 0
    assert "aidhub_prediction_log_queue 0.0" in lines(metrics)
    assert "aidhub_prediction_log_dropped 7.0" in lines(metrics)


def test_render_uses_its_own_registry_and_the_exposition_content_type():
    metrics = Metrics()
    metrics.observe_prediction("iris", "1.0.0", "ok", 1.0)
    _, content_type = metrics.render()
    assert content_type == prometheus_client.CONTENT_TYPE_LATEST
    assert b"aidhub_predictions_total" not in prometheus_client.generate_latest()
    assert not [line for line in lines(Metrics()) if line.startswith("aidhub_predictions_total{")]


def test_versions_are_read_at_scrape_time_and_builds_are_timed():
    metrics = Metrics()
    states = [
        VersionState("iris", "1.0.0", True, 0.8, 0.4902),
        VersionState("wine", "2.0.0", False, None, None),
    ]
    metrics.watch_versions(lambda: states)
    metrics.observe_build("iris", "1.0.0", "succeeded", 4.2)
    text = metrics.render()[0].decode()
    assert 'aidhub_deployment_up{model="iris",version="1.0.0"} 1.0' in text
    assert 'aidhub_deployment_up{model="wine",version="2.0.0"} 0.0' in text
    assert 'aidhub_accuracy_ratio{model="iris",version="1.0.0"} 0.8' in text
    assert 'aidhub_accuracy_lower_bound_ratio{model="iris",version="1.0.0"} 0.4902' in text
    assert 'aidhub_accuracy_ratio{model="wine"' not in text  # no judged feedback: no sample
    assert (
        'aidhub_build_duration_seconds_bucket{le="5.0",model="iris",status="succeeded",version="1.0.0"} 1.0'
        in text
    )
    states[0] = VersionState("iris", "1.0.0", False, 0.8, 0.4902)  # read again at the next scrape
    assert 'aidhub_deployment_up{model="iris",version="1.0.0"} 0.0' in metrics.render()[0].decode()


def histogram_lines(metrics: Metrics) -> list[str]:
    """Its latency histogram's lines, less the time each series was created."""
    found = [line for line in lines(metrics) if line.startswith("aidhub_prediction_latency_seconds_")]
    return [line for line in found if not line.startswith("aidhub_prediction_latency_seconds_created")]


def test_latency_counts_split_a_rollup_bucket_across_a_bound_in_proportion():
    across = bucket_of(1.0)  # 0.911 .. 1.229 ms: across the 1 ms bound
    lower, upper = bucket_range(across)
    assert lower < 1.0 < upper
    counts = latency_counts({across: 100, bucket_of(12.0): 7, OVERFLOW: 2})
    assert len(counts) == len(LATENCY_BUCKETS_S) + 1 and sum(counts) == 109
    assert counts[:2] == [round(100 * (1.0 - lower) / (upper - lower)), 100 - counts[0]]
    assert counts[LATENCY_BUCKETS_S.index(0.025)] == 7 and counts[-1] == 2  # over 60 s: +Inf only
    assert latency_counts({}) == [0] * (len(LATENCY_BUCKETS_S) + 1)


def test_a_seeded_histogram_is_the_one_observing_the_same_calls_gives():
    """Latencies whose rollup buckets lie inside one histogram bucket each: the seeded buckets, count
    and sum are exactly those of observing them."""
    latencies_ms = [0.3, 3.5, 3.5, 12.0, 40.0, 200.0, 7000.0, 70000.0]
    observed, seeded = Metrics(), Metrics()
    for latency in latencies_ms:
        observed.observe_prediction("iris", "1.0.0", "ok", latency)
    totals = Counter(requests=len(latencies_ms), latency_sum_ms=sum(latencies_ms))
    seeded.seed("iris", "1.0.0", totals, dict(Counter(bucket_of(x) for x in latencies_ms)))
    assert histogram_lines(seeded) == histogram_lines(observed)
    assert 'aidhub_prediction_latency_seconds_count{model="iris",version="1.0.0"} 8.0' in lines(seeded)
    seeded.observe_prediction("iris", "1.0.0", "ok", 3.5)  # and it counts on from there
    assert 'aidhub_prediction_latency_seconds_count{model="iris",version="1.0.0"} 9.0' in lines(seeded)


@pytest.mark.parametrize("latency", [None, {}])
def test_seeding_without_latency_rollups_leaves_the_histogram_alone(latency):
    metrics = Metrics()
    metrics.seed("iris", "1.0.0", Counter(requests=3, latency_sum_ms=9.0), latency)
    assert histogram_lines(metrics) == []
    assert 'aidhub_predictions_total{model="iris",source="hub",status="ok",version="1.0.0"} 3.0' in lines(
        metrics
    )
