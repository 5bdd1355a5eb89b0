"""Prometheus metrics on the monitor's own registry."""

import prometheus_client

from monitor.metrics import Metrics, VersionState


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
