"""The OpenAPI operations of dataset snapshots (web/datasets.py), their schemas inline."""

from __future__ import annotations

from web.openapi_operations import VERSION_QUERY, op, reply
from web.openapi_schemas import array, fields, obj, typed

FORMAT = typed("string", enum=["parquet", "csv", "jsonl"])
DIGEST = "sha256:<hex> of the file, or its first 8 or more hex digits"


def dataset_schema() -> dict:
    column = obj(fields(string="name role") | {"type": typed("string", enum=["float", "int", "bool", "string",
                                                                            "time", "json"])})  # fmt: skip
    filter_ = obj(fields(string="version since", time="from") | {"labelled_only": typed("boolean")})
    found = fields(string="digest model version filename url reference_url", integer="rows labels size")
    return obj(
        found | {"format": FORMAT, "columns": array(column), "filter": filter_, "created_at": typed("string")}
    )


def request_schema() -> dict:
    options = {
        "since": typed("string", nullable=True, description="e.g. 24h, 7d; all or absent: every prediction"),
        "labelled_only": typed("boolean", description="Only predictions with a feedback label."),
        "format": FORMAT,
    }
    return obj(options, [], additionalProperties=False)


def dataset_operations() -> dict:
    snapshot = dataset_schema()
    body = {"required": False, "content": {"application/json": {"schema": request_schema()}}}
    listing = obj({"model": typed("string"), "datasets": array(snapshot)})
    octets = {
        "application/octet-stream": {
            "schema": {"type": "string", "contentMediaType": "application/octet-stream"}
        }
    }
    csv = {"text/csv": {"schema": {"type": "string", "contentMediaType": "text/csv"}}}
    return {
        ("/api/v1/models/{name}/datasets", "POST"): op(
            "Snapshot a version's predictions, outputs and feedback (streamed; one row per prediction item)",
            (201, reply("A new snapshot (200: one with the same content existed)", snapshot)),
            400, 404, 507, body=body, params=[VERSION_QUERY], tag="datasets",
        ),
        ("/api/v1/models/{name}/datasets", "GET"): op(
            "The model's dataset snapshots, newest first", (200, reply("OK", listing)), 404, tag="datasets",
        ),
        ("/api/v1/datasets/{digest}", "GET"): op(
            f"A snapshot's file as stored ({DIGEST}); its ETag and X-Checksum-Sha256 are the sha256",
            (200, {"description": "The file's bytes", "content": octets}), 400, 404, tag="datasets",
        ),
        ("/api/v1/datasets/{digest}/reference.csv", "GET"): op(
            "A snapshot's input columns as a reference-data CSV, for a package's reference_data",
            (200, {"description": "CSV, streamed", "content": csv}), 400, 404, tag="datasets",
        ),
    }  # fmt: skip
