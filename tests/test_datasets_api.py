"""Dataset snapshots over HTTP, on SQLite and PostgreSQL: export (201, then 200 for the same content),
list, download by digest, reference CSV, the status of each bad request, who may (never an anonymous
caller; the `publish` scope and the model's owner), and the Datasets section of the model page."""

from __future__ import annotations

import hashlib

import pytest

from hub.auth import Principal
from registry.models import ModelRow
from tests.test_datasets import HEADER, T0, pair, stamp

ADMIN = Principal("admin", frozenset({"admin"}))
PATH = "/api/v1/models/demo-adder/datasets"


@pytest.fixture
def demo(hub, publish, client):
    publish()
    return hub


def token_client(app, hub, owner: str, scopes: list[str]):
    token = hub.create_token(ADMIN, {"owner": owner, "scopes": scopes})["token"]
    caller = app.test_client()
    caller.environ_base["HTTP_AUTHORIZATION"] = f"Bearer {token}"
    return caller


def test_export_list_download_and_reference(demo, client):
    first = pair(demo, [1.0, 2.0])
    made = client.post(PATH, json={"format": "csv"})
    assert made.status_code == 201, made.get_json()
    snapshot = made.get_json()
    again = client.post(PATH + "?version=1.0.0", json={"format": "csv"})
    assert (again.status_code, again.get_json()["digest"]) == (200, snapshot["digest"])
    listed = client.get(PATH).get_json()
    assert [s["digest"] for s in listed["datasets"]] == [snapshot["digest"]]
    got = client.get(snapshot["url"])
    assert (got.status_code, got.mimetype) == (200, "text/csv")
    assert "sha256:" + hashlib.sha256(got.data).hexdigest() == snapshot["digest"]
    assert got.headers["X-Checksum-Sha256"] == snapshot["digest"][7:]
    assert got.data.decode().splitlines() == [HEADER, f"{first},{stamp(T0)},0,1.0,2.0,2.0,3.0,,,,false"]
    reference = client.get(snapshot["digest"][:15].join(["/api/v1/datasets/", "/reference.csv"]))
    assert (reference.status_code, reference.data) == (200, b"x.0,x.1\r\n1.0,2.0\r\n")


def test_an_export_without_a_body_is_every_prediction_as_parquet(demo, client):
    reply = client.post(PATH)
    assert reply.status_code == 201
    assert (reply.get_json()["format"], reply.get_json()["rows"]) == ("parquet", 0)
    assert client.get(reply.get_json()["url"]).data[:4] == b"PAR1"


@pytest.mark.parametrize(
    ("body", "status", "error"),
    [
        ({"format": "xlsx"}, 400, "format 'xlsx' is not one of parquet, csv, jsonl; e.g. --format parquet."),
        ({"since": "soon"}, 400, "since 'soon' is not a duration; use e.g. 90m, 24h, 7d, or all."),
        ({"labelled_only": "yes"}, 400, "labelled_only must be true or false, not 'yes'."),
        ({"rows": 5}, 400, "Unknown field(s) 'rows'; the options are since, labelled_only, format."),
    ],
)
def test_bad_export_options_are_400_naming_the_value(demo, client, body, status, error):
    reply = client.post(PATH, json=body)
    assert (reply.status_code, reply.get_json()["error"]) == (status, error)


def test_unknown_model_version_and_digest(demo, client):
    assert client.post("/api/v1/models/nope/datasets").status_code == 404
    assert client.post(PATH + "?version=9.9.9").status_code == 404
    assert client.get("/api/v1/datasets/sha256:" + "ab" * 32).status_code == 404
    bad = client.get("/api/v1/datasets/not-a-digest")
    assert bad.status_code == 400 and bad.get_json()["error"].startswith(
        "'not-a-digest' is not a snapshot digest"
    )


def test_who_may_export_and_read_snapshots(demo, app, client):
    snapshot = client.post(PATH).get_json()
    ModelRow.update(owner="ann").where(ModelRow.name == "demo-adder").execute()
    routes = [("post", PATH), ("get", PATH), ("get", snapshot["url"]), ("get", snapshot["reference_url"])]
    anonymous = app.test_client()
    assert [getattr(anonymous, m)(p).status_code for m, p in routes] == [401, 401, 401, 401]
    reader = token_client(app, demo, "ann", ["read", "predict", "feedback"])
    assert [getattr(reader, m)(p).status_code for m, p in routes] == [403, 403, 403, 403]
    stranger = token_client(app, demo, "bob", ["publish"])
    assert [getattr(stranger, m)(p).status_code for m, p in routes] == [403, 403, 404, 404]
    owner = token_client(app, demo, "ann", ["publish"])
    assert [getattr(owner, m)(p).status_code for m, p in routes] == [200, 200, 200, 200]


def test_the_model_page_lists_snapshots_to_their_owner_only(demo, app, client):
    snapshot = client.post(PATH, json={"since": "7d", "labelled_only": True}).get_json()
    page = client.get("/models/demo-adder").data.decode()
    assert '<section id="datasets">' in page and snapshot["digest"][:19] in page
    assert "since 7d, labelled only" in page and f'href="{snapshot["url"]}"' in page
    data = client.get("/models/demo-adder.json").get_json()
    assert [d["digest"] for d in data["datasets"]] == [snapshot["digest"]]
    anonymous = app.test_client().get("/models/demo-adder").data.decode()
    assert 'id="datasets"' not in anonymous and snapshot["digest"][:19] not in anonymous
