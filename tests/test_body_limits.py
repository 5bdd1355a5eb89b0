"""Request bodies are capped on every route (issue 10, item 5; web/bodylimits.py): a body declared over
its route's cap is answered 413, naming the cap and the setting to raise, before a byte of it is read; a
body sent without a length (chunked) is cut at the cap. The caps are settings. On SQLite and
PostgreSQL through the Flask test client, and over sockets to `aid serve` (gunicorn, gevent)."""

from __future__ import annotations

import io
import re
import socket
import tarfile
import time

import pytest

from hub.config import Config
from hub.errors import SettingInvalid
from tests.hostile import MiB, files_of, tar_gz, valid_package
from tests.hubserver import HubProcess
from web.app import create_app

ERROR_KEYS = ["ok", "error", "errors", "status"]
SHA = "0" * 64
BODY_METHODS = {"POST", "PUT", "PATCH", "DELETE"}
VARIABLE = re.compile(r"<(?:(?P<converter>\w+)(?:\([^)]*\))?:)?\w+>")  # <name>, <int:id>, <path:name>


class Unreadable:
    """A request body that fails the test if anything reads it."""

    def read(self, *args):
        raise AssertionError("the body was read")

    readline = read


def body_routes(app) -> list[tuple[str, str, str]]:
    """(method, path, content type) of every route that takes a body, from the app's URL map; the
    publish route twice, as a file list (JSON) and as a .tar.gz."""
    values = {"int": "1", "path": "some/model"}

    def value(match: re.Match) -> str:
        return values.get(match["converter"], SHA)

    routes = []
    for rule in app.url_map.iter_rules():
        path = VARIABLE.sub(value, rule.rule)
        for method in sorted(rule.methods & BODY_METHODS):
            routes.append((method, path, "application/json"))
            if path == "/api/v1/models":
                routes.append((method, path, "application/gzip"))
    return routes


def expected_cap(config: Config, method: str, path: str, content_type: str) -> tuple[int, str]:
    """The table of docs/storage.md and web/bodylimits.py, written out again."""
    if method == "PATCH" and path.startswith("/api/v1/blobs/"):
        return config.max_file_bytes, "AIDHUB_MAX_FILE_SIZE"
    if path == "/api/v1/models" and content_type == "application/gzip":
        return config.max_version_bytes, "AIDHUB_MAX_VERSION_SIZE"
    if path.endswith(("/predict", "/infer")) or path in ("/api/v1/models", "/api/v1/blobs/missing"):
        return config.max_request_body_bytes, "AIDHUB_MAX_REQUEST_BODY"
    return config.max_json_body_bytes, "AIDHUB_MAX_JSON_BODY"


def declared(client, method: str, path: str, length: int, content_type: str = "application/json"):
    """A request that says it carries `length` bytes and carries a body that must not be read."""
    overrides = {"CONTENT_LENGTH": str(length), "wsgi.input": Unreadable()}
    return client.open(path, method=method, content_type=content_type, environ_overrides=overrides)


def assert_too_large(reply, limit: int, setting: str) -> None:
    body = reply.get_json()
    assert reply.status_code == 413, (reply.status_code, reply.data[:300])
    assert list(body) == ERROR_KEYS and body["ok"] is False and body["status"] == 413 and body["errors"] == []
    assert f"larger than the limit of {limit:,} bytes" in body["error"], body
    assert f"raise {setting} on the hub" in body["error"], body


# --- every route -------------------------------------------------------------------------------------


def test_every_route_that_takes_a_body_refuses_one_over_its_cap_without_reading_it(app, client, hub):
    routes = body_routes(app)
    assert len(routes) >= 15 and ("POST", "/api/v1/models/some/model/predict", "application/json") in routes
    for method, path, content_type in routes:
        limit, setting = expected_cap(hub.config, method, path, content_type)
        assert_too_large(declared(client, method, path, limit + 1, content_type), limit, setting)


@pytest.mark.parametrize(
    "method, path, setting",
    [
        ("POST", "/api/v1/models/some/model/predict", "AIDHUB_MAX_REQUEST_BODY"),
        ("POST", "/v2/models/some/model/infer", "AIDHUB_MAX_REQUEST_BODY"),
        ("POST", "/v2/models/some/model/versions/1.0.0/infer", "AIDHUB_MAX_REQUEST_BODY"),
        ("POST", "/api/v1/predictions/abc/feedback", "AIDHUB_MAX_JSON_BODY"),
        ("POST", "/api/v1/models/some/model/feedback", "AIDHUB_MAX_JSON_BODY"),
        ("PUT", "/api/v1/models/some/model/aliases/production", "AIDHUB_MAX_JSON_BODY"),
        ("POST", "/models/some/model/feedback", "AIDHUB_MAX_JSON_BODY"),
    ],
)
def test_a_body_at_its_cap_goes_through_and_one_byte_more_is_refused(client, hub, method, path, setting):
    limit = {"AIDHUB_MAX_REQUEST_BODY": 64 * MiB, "AIDHUB_MAX_JSON_BODY": MiB}[setting]
    at_cap = client.open(path, method=method, data=b" " * limit, content_type="application/json")
    assert at_cap.status_code != 413, at_cap.get_json()
    assert_too_large(declared(client, method, path, limit + 1), limit, setting)


def test_an_image_sized_prediction_gets_past_the_cap(client):
    """A 224x224x3 float image as JSON is some 2 MB; 64Mi leaves room for a batch of them."""
    image = "[" + ",".join(["0.123456"] * 224 * 224 * 3) + "]"
    body = f'{{"inputs": {{"image": {image}}}}}'.encode()
    assert 1 * MiB < len(body) < 64 * MiB
    reply = client.post("/api/v1/models/no-such-model/predict", data=body, content_type="application/json")
    assert reply.status_code == 404, reply.get_json()


def test_a_chunked_body_is_cut_at_the_cap(client, hub):
    """No Content-Length (chunked, as gevent passes it on): the body is read up to the cap and one byte."""
    stream = io.BytesIO(b"{" + b" " * (3 * MiB))
    overrides = {
        "CONTENT_LENGTH": "", "HTTP_TRANSFER_ENCODING": "chunked", "wsgi.input_terminated": True,
        "wsgi.input": stream,
    }  # fmt: skip
    reply = client.post("/api/v1/predictions/abc/feedback", content_type="application/json",
                        environ_overrides=overrides)  # fmt: skip
    assert_too_large(reply, MiB, "AIDHUB_MAX_JSON_BODY")
    assert stream.tell() == MiB + 1


def test_a_content_length_that_is_not_a_number_is_a_bad_request(client):
    for value in ("abc", "-1", "1e9"):
        reply = client.post(
            "/api/v1/models/x/predict", content_type="application/json",
            environ_overrides={"CONTENT_LENGTH": value, "wsgi.input": Unreadable()},
        )  # fmt: skip
        assert reply.status_code == 400 and "is not a number of bytes" in reply.get_json()["error"]


# --- the settings ------------------------------------------------------------------------------------


def test_the_caps_are_settings_with_sane_defaults():
    config = Config.load(env={})
    assert (config.max_request_body_bytes, config.max_json_body_bytes) == (64 * MiB, MiB)
    assert config.max_compression_ratio == 200
    env = {
        "AIDHUB_MAX_REQUEST_BODY": "256Mi",
        "AIDHUB_MAX_JSON_BODY": "4Mi",
        "AIDHUB_MAX_COMPRESSION_RATIO": "0",
    }
    config = Config.load(env=env)
    assert (config.max_request_body_bytes, config.max_json_body_bytes) == (256 * MiB, 4 * MiB)
    assert config.max_compression_ratio == 0


@pytest.mark.parametrize(
    "name, value, says",
    [
        ("AIDHUB_MAX_REQUEST_BODY", "lots", "AIDHUB_MAX_REQUEST_BODY='lots' is not a size; use e.g. 64Mi"),
        ("AIDHUB_MAX_JSON_BODY", "1 MB", "AIDHUB_MAX_JSON_BODY='1 MB' is not a size; use e.g. 1Mi"),
        ("AIDHUB_MAX_COMPRESSION_RATIO", "abc", "AIDHUB_MAX_COMPRESSION_RATIO='abc' is not a ratio"),
        ("AIDHUB_MAX_COMPRESSION_RATIO", "0.5", "use a number >= 1 such as 200"),
        ("AIDHUB_MAX_COMPRESSION_RATIO", "-3", "or 0 for no limit"),
        ("AIDHUB_MAX_COMPRESSION_RATIO", "inf", "AIDHUB_MAX_COMPRESSION_RATIO='inf' is not a ratio"),
    ],
)
def test_a_bad_cap_setting_names_the_variable(name, value, says):
    with pytest.raises(SettingInvalid) as e:
        Config.load(env={name: value})
    assert says in str(e.value)


def test_the_hub_applies_the_caps_it_is_given(open_hub, tmp_path, database_url):
    hub = open_hub(tmp_path / "home", database_url, max_request_body_bytes=1000, max_json_body_bytes=100)
    try:
        client = create_app(hub=hub).test_client()
        assert_too_large(
            declared(client, "POST", "/api/v1/models/x/predict", 1001), 1000, "AIDHUB_MAX_REQUEST_BODY"
        )
        at_cap = client.post("/api/v1/models/x/predict", data=b" " * 1000, content_type="application/json")
        assert at_cap.status_code == 400, at_cap.get_json()  # read, and found not to be JSON
        assert_too_large(
            declared(client, "POST", "/api/v1/predictions/x/feedback", 101), 100, "AIDHUB_MAX_JSON_BODY"
        )
    finally:
        hub.close()


def test_aidhub_max_compression_ratio_reaches_the_archive_route(open_hub, tmp_path, database_url):
    """A package with 64 MiB of zeros (the archive some 60 KiB): refused at the default ratio, taken
    with AIDHUB_MAX_COMPRESSION_RATIO=0."""
    root = valid_package(tmp_path / "pkg")
    zeros = tarfile.TarInfo("weights.bin")
    zeros.size = 64 * MiB
    body = tar_gz([*files_of(root), (zeros, bytes(64 * MiB))])
    headers = {}
    for ratio, status in ((200.0, 413), (0.0, 201)):
        hub = open_hub(tmp_path / f"home-{ratio}", database_url, max_compression_ratio=ratio)
        try:
            assert hub.catalog.packages.limits.max_ratio == ratio
            client = create_app(hub=hub).test_client()
            token = hub.config.home / "admin-token"  # written by the first start on the database
            headers = {"Authorization": f"Bearer {token.read_text().strip()}"} if token.is_file() else headers
            reply = client.post("/api/v1/models", data=body, content_type="application/gzip", headers=headers)
            assert reply.status_code == status, reply.get_json()
        finally:
            hub.close()


# --- over sockets, to aid serve ---------------------------------------------------------------------


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    hub = HubProcess(tmp_path_factory.mktemp("bodies") / "home").start()
    yield hub
    hub.stop()


def exchange(server, head: str, body_chunks=(), timeout: float = 10) -> bytes:
    """Send the request head and then each chunk, unless the answer comes first; the answer."""
    with socket.create_connection(("127.0.0.1", server.port), timeout=timeout) as sock:
        sock.sendall(head.encode())
        for chunk in body_chunks:
            sock.sendall(chunk)
        answer = b""
        while b"\r\n\r\n" not in answer or b"AIDHUB_" not in answer:
            more = sock.recv(65536)
            if not more:
                break
            answer += more
    return answer


def test_a_real_hub_answers_a_declared_10_gib_body_at_once_without_it(server):
    started = time.perf_counter()
    head = (
        "POST /api/v1/models/x/predict HTTP/1.1\r\nHost: hub\r\nContent-Type: application/json\r\n"
        f"Content-Length: {10 * 1024**3}\r\n\r\n"
    )
    answer = exchange(server, head)
    assert answer.startswith(b"HTTP/1.1 413"), answer[:300]
    assert b"raise AIDHUB_MAX_REQUEST_BODY on the hub" in answer
    assert time.perf_counter() - started < 3


def test_a_real_hub_cuts_a_chunked_body_at_the_cap(server):
    head = (
        "POST /api/v1/predictions/abc/feedback HTTP/1.1\r\nHost: hub\r\nContent-Type: application/json\r\n"
        "Transfer-Encoding: chunked\r\n\r\n"
    )
    piece = b" " * (64 * 1024)
    chunks = [b"1\r\n{\r\n", *(b"%x\r\n%s\r\n" % (len(piece), piece) for _ in range(40)), b"0\r\n\r\n"]
    answer = exchange(server, head, chunks)
    assert answer.startswith(b"HTTP/1.1 413"), answer[:300]
    assert b"raise AIDHUB_MAX_JSON_BODY on the hub" in answer
