"""The parts of a hub of several processes that need no running hub: the shared route cache, the
time in a prediction id, and Prometheus counts summed over processes (hub/processes.py,
monitor/metrics.py). tests/test_serve_workers.py runs the whole of it."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from types import SimpleNamespace

from hub.processes import SharedRoutes, served_at
from monitor.predlog import new_prediction_id

COUNT = """
import os
import sys
from monitor.metrics import Metrics
metrics = Metrics(shared=os.environ["PROMETHEUS_MULTIPROC_DIR"])
for _ in range(int(sys.argv[1])):
    metrics.observe_prediction("iris", "1.0.0", "ok", 3.0)
metrics.observe_drift("iris", "1.0.0", float(sys.argv[1]) / 10, 1)
sys.stdout.buffer.write(metrics.render()[0])
"""


def test_a_change_in_one_process_clears_the_route_cache_of_another(tmp_path):
    loads = []

    def load():
        loads.append(1)
        return [(SimpleNamespace(model="doubler"), lambda: f"http://server-{len(loads)}", 100)]

    mine, theirs = SharedRoutes(tmp_path / "stamp"), SharedRoutes(tmp_path / "stamp")
    assert mine.get(("doubler", None), load).pick(0).url == "http://server-1"
    assert mine.get(("doubler", None), load).pick(0).url == "http://server-1"  # cached
    theirs.clear()  # e.g. the supervisor restarted the server elsewhere
    assert mine.get(("doubler", None), load).pick(0).url == "http://server-2"
    assert len(loads) == 2


def test_served_at_is_the_time_a_prediction_id_was_made():
    now = time.time()
    assert abs(served_at(new_prediction_id(now)) - now) < 0.002
    assert served_at("not-a-prediction-id") == 0.0
    assert served_at("U" * 26) == 0.0  # U is not in Crockford's alphabet


def test_counters_of_several_processes_are_summed_and_the_latest_drift_wins(tmp_path):
    env = {**os.environ, "PROMETHEUS_MULTIPROC_DIR": str(tmp_path)}
    run = [sys.executable, "-c", COUNT]
    for calls in ("3", "4"):
        subprocess.run([*run, calls], env=env, check=True, capture_output=True)
    text = subprocess.run([*run, "0"], env=env, check=True, capture_output=True, text=True).stdout
    lines = text.splitlines()
    assert 'aidhub_predictions_total{model="iris",source="hub",status="ok",version="1.0.0"} 7.0' in lines
    assert 'aidhub_prediction_latency_seconds_count{model="iris",version="1.0.0"} 7.0' in lines
    assert 'aidhub_drift_share_ratio{model="iris",version="1.0.0"} 0.0' in lines  # the last run's
