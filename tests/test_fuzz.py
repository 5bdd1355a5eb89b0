"""A property-based fuzz of the whole HTTP API from its own OpenAPI document, with schemathesis: every
operation gets generated requests (as an admin, so that they reach the code behind the scope checks).
No reply may be a 500, and every error must have the JSON error shape."""

from __future__ import annotations

import pytest
import schemathesis
from hypothesis import HealthCheck, given, settings

from tests.packages import archive, onnx_package
from web.app import create_app

EXAMPLES = 25
ERROR_KEYS = {"ok", "error", "errors", "status"}
# The Open Inference Protocol answers "not ready" with its own body, and files are sent as bytes.
OWN_BODIES = ("/ready", "/files/")


@pytest.fixture(scope="module")
def fuzzed(open_hub, module_database_url, tmp_path_factory):
    root = tmp_path_factory.mktemp("fuzz")
    hub = open_hub(root / "home", module_database_url, build_workers=0)
    hub.publish(archive(onnx_package(root / "pkg")))
    app = create_app(hub=hub)
    token = (hub.config.home / "admin-token").read_text().strip()
    yield schemathesis.openapi.from_wsgi("/api/v1/openapi.json", app), token
    hub.close()


def fuzz(operation, token: str, seen: dict[str, int]) -> None:
    quiet = list(HealthCheck)

    @settings(max_examples=EXAMPLES, deadline=None, database=None, suppress_health_check=quiet)
    @given(case=operation.as_strategy())
    def check(case):
        reply = case.call(headers={"Authorization": f"Bearer {token}"})
        what = (case.operation.label, case.path_parameters, case.query, case.body, reply.text[:300])
        assert reply.status_code < 500, what
        seen[case.operation.label] = seen.get(case.operation.label, 0) + 1
        if reply.status_code >= 400 and not any(part in case.formatted_path for part in OWN_BODIES):
            assert ERROR_KEYS <= set(reply.json()), what

    check()


def test_no_generated_request_gets_a_500_and_every_error_has_the_json_shape(fuzzed):
    schema, token = fuzzed
    seen: dict[str, int] = {}
    for result in schema.get_all_operations():
        fuzz(result.ok(), token, seen)
    assert len(seen) >= 39 and sum(seen.values()) >= 39 * 5


def test_a_nul_character_is_a_400_not_a_database_error(client):
    """Found by the fuzz on PostgreSQL, which cannot store NUL in text."""
    assert client.get("/api/v1/models?q=%00").status_code == 400
    reply = client.post("/api/v1/models/x/feedback", json={"comment": "a\u0000b"})
    assert reply.status_code == 400 and "NUL character" in reply.get_json()["error"]
