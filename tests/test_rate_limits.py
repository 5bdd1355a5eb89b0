"""Rate limits per client on predict and feedback: a token bucket per client (its token, else its
address), 429 with Retry-After, through the real web app over a real Hub."""

from __future__ import annotations

import pytest

from hub.config import Config
from hub.errors import SettingInvalid
from tests.conftest import admin_client
from tests.packages import archive, onnx_package
from web.app import create_app
from web.ratelimits import Limiter


def test_a_bucket_allows_bursts_then_the_rate():
    now = [0.0]
    limiter = Limiter(rate=2.0, burst=3, clock=lambda: now[0])
    assert [limiter.wait("a") for _ in range(3)] == [0.0, 0.0, 0.0]
    assert limiter.wait("a") == pytest.approx(0.5)  # the next call in half a second
    assert limiter.wait("b") == 0.0  # another client has its own bucket
    now[0] += 0.5
    assert limiter.wait("a") == 0.0 and limiter.wait("a") > 0


@pytest.fixture
def limited(open_hub, tmp_path, database_url):
    hub = open_hub(tmp_path / "home", database_url, rate_feedback=(3 / 60, 3), rate_predict=(2.0, 2))
    hub.publish(archive(onnx_package(tmp_path / "pkg")))
    yield hub, create_app(hub=hub)
    hub.close()


def test_feedback_over_the_limit_gets_429_with_retry_after(limited):
    _, app = limited
    anonymous = app.test_client()
    statuses = [
        anonymous.post("/api/v1/models/doubler/feedback", json={"rating": 5}).status_code for _ in range(4)
    ]
    assert statuses == [201, 201, 201, 429]
    refused = anonymous.post("/api/v1/models/doubler/feedback", json={"rating": 5})
    assert 1 <= int(refused.headers["Retry-After"]) <= 20
    assert "the limit is 0.05 a second (bursts of 3)" in refused.get_json()["error"]
    assert "AIDHUB_RATE_FEEDBACK" in refused.get_json()["error"]
    assert admin_client(app).post("/api/v1/models/doubler/feedback", json={"rating": 4}).status_code == 201


def test_predict_is_limited_before_the_body_is_read(limited):
    _, app = limited
    client = app.test_client()
    body = {"inputs": {"x": [[1.0, 2.0]]}}
    statuses = [client.post("/api/v1/models/doubler/predict", json=body).status_code for _ in range(3)]
    assert statuses == [503, 503, 429]  # not deployed: the first two reach the hub
    v2 = client.post("/v2/models/doubler/infer", json={"inputs": []})
    assert v2.status_code == 429 and v2.headers["Retry-After"] == "1"


def test_rates_are_settings(tmp_path):
    assert Config.load(env={"AIDHUB_RATE_PREDICT": "60/m"}, home=tmp_path).rate_predict == (1.0, 60)
    assert Config.load(env={"AIDHUB_RATE_FEEDBACK": "0"}, home=tmp_path).rate_feedback == (0.0, 0)
    with pytest.raises(SettingInvalid, match="AIDHUB_RATE_PREDICT='fast' is not a rate; use e.g. 500/s"):
        Config.load(env={"AIDHUB_RATE_PREDICT": "fast"}, home=tmp_path)
