"""The database going away and coming back, for real: PostgreSQL stopped under a running hub.

What needs the database answers 503 with Retry-After; predictions to serving versions go on and are
logged once it is back; the hub recovers without a restart."""

import json
import shutil
import tempfile
import time
from pathlib import Path

import httpx
import pytest

from tests.hubserver import HubProcess, wait_for
from tests.packages import onnx_package
from tests.postgres import PostgresServer

pytestmark = pytest.mark.slow
CALL = {"inputs": {"x": [[1.0, 2.0]]}}


def predict(hub: HubProcess, headers: dict | None = None) -> httpx.Response:
    return httpx.post(f"{hub.url}/api/v1/models/doubler/predict", json=CALL, headers=headers, timeout=10)


def assert_database_unavailable(reply: httpx.Response, html: bool = False) -> None:
    assert reply.status_code == 503, reply.text[:500]
    assert int(reply.headers["Retry-After"]) > 0
    if html:
        assert "database does not answer" in reply.text
    else:
        assert "database does not answer" in reply.json()["error"]


def test_predictions_go_on_while_postgresql_is_down_and_everything_recovers_without_a_restart(tmp_path):
    server = PostgresServer(Path(tempfile.mkdtemp(prefix="aidhub-pg-"))).start()  # postgres reads it
    hub = HubProcess(tmp_path / "home", extra_env={"AIDHUB_DATABASE_URL": server.create_database("hub")})
    hub.start()
    try:
        assert hub.aid("publish", str(onnx_package(tmp_path / "pkg")), "--deploy").returncode == 0
        before = [predict(hub, hub.headers).json()["id"] for _ in range(5)]  # the token is known
        pid = hub.proc.pid

        server.stop()
        during = wait_for(lambda: _calls_for(hub, 6.0), 30, "predictions during the outage")
        assert all(r.status_code == 200 for r in during), [r.text for r in during if r.status_code != 200]
        assert_database_unavailable(httpx.get(f"{hub.url}/api/v1/models", timeout=10))
        assert_database_unavailable(
            httpx.post(f"{hub.url}/api/v1/predictions/{before[0]}/feedback", json={"correct": True})
        )
        assert_database_unavailable(httpx.get(f"{hub.url}/models/doubler", timeout=10), html=True)
        assert_database_unavailable(
            httpx.get(f"{hub.url}/api/v1/models/doubler", headers=hub.headers, timeout=10)
        )

        server.start_again()
        wait_for(lambda: httpx.get(f"{hub.url}/api/v1/models").status_code == 200, 30, "the API answering")
        one_of_during = during[-1].json()["id"]
        reply = wait_for(lambda: _feedback(hub, one_of_during), 30, "feedback on a call of the outage")
        assert reply.status_code == 201, reply.text
        calls = len(before) + len(during)
        card = wait_for(lambda: _card_with(hub, calls), 30, f"the scorecard counting {calls} calls")
        assert card["feedback"]["count"] == 1
        assert hub.proc.pid == pid and hub.proc.poll() is None  # the same process: no restart
    finally:
        hub.undeploy_all()
        hub.stop()
        server.stop()
        shutil.rmtree(server.root, ignore_errors=True)


def _calls_for(hub: HubProcess, seconds: float) -> list[httpx.Response]:
    """Predictions for `seconds`, anonymous and with the admin token, past the caches of routes (2 s)
    and tokens (5 s), so both are looked up again while the database is away."""
    end, replies = time.monotonic() + seconds, []
    while time.monotonic() < end:
        replies.append(predict(hub, hub.headers if len(replies) % 2 else None))
    return replies


def _feedback(hub: HubProcess, prediction_id: str) -> httpx.Response | None:
    reply = httpx.post(f"{hub.url}/api/v1/predictions/{prediction_id}/feedback", json={"correct": True})
    return reply if reply.status_code != 503 else None


def _card_with(hub: HubProcess, calls: int) -> dict | None:
    card = json.loads(hub.aid("scorecard", "doubler", "--json").stdout)
    return card if card["requests"] == calls else None
