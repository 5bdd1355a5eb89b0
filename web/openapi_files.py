"""The OpenAPI operations and schemas of package files: blobs uploaded in parts, files pulled."""

from __future__ import annotations

from web.openapi_operations import json_body, ok, op
from web.openapi_schemas import array, extend, fields, obj, typed

SHA256 = typed("string", pattern="^[0-9a-f]{64}$")


def file_schemas() -> dict:
    blob = obj({"sha256": SHA256, "size": typed("integer", minimum=0)}, ["sha256", "size"])
    entry = obj({"path": typed("string"), "sha256": SHA256, "size": typed("integer", minimum=0)})
    held = {"offset": typed("integer", description="Bytes of the blob the hub holds; send from here.")}
    return {
        "BlobList": obj({"blobs": array(blob)}, ["blobs"]),
        "MissingBlobs": obj(
            {"missing": array(extend_inline(blob, held))} | fields(integer="present present_bytes")
        ),
        "PartStored": obj(fields(string="sha256", integer="size offset", boolean="complete")),
        "FileList": obj({"files": array(entry)}, ["files"]),
        "VersionFiles": obj(
            fields(string="model version digest", integer="size")
            | {"files": array(extend_inline(entry, {"url": typed("string")}))}
        ),
        "PublishedFiles": extend("Published", fields(integer="files new_bytes deduplicated_bytes")),
    }


def extend_inline(schema: dict, properties: dict) -> dict:
    return {**schema, "properties": {**schema["properties"], **properties}}


def file_operations() -> dict:
    part = [
        {"name": "offset", "in": "query", "required": True, "schema": typed("integer"),
         "description": "Bytes of the blob sent before this part."},
        {"name": "size", "in": "query", "required": True, "schema": typed("integer"),
         "description": "The whole blob's size."},
    ]  # fmt: skip
    octets = {
        "application/octet-stream": {
            "schema": {"type": "string", "contentMediaType": "application/octet-stream"}
        }
    }
    return {
        ("/api/v1/blobs/missing", "POST"): op(
            "Which blobs of a package the hub lacks, and where each interrupted upload stopped",
            ok(200, "MissingBlobs"), 400, 413, 507, body=json_body("BlobList"), tag="files",
        ),
        ("/api/v1/blobs/{sha256}", "PATCH"): op(
            "Send one part of a blob; the last part is checked against the sha256 and stored",
            ok(200, "PartStored"), 400, 409, 413, 422, 507, params=part,
            body={"required": True, "content": octets}, tag="files",
        ),
        ("/api/v1/models/{name}/versions/{ref}/files", "GET"): op(
            "A version's files with their digests, sizes and download URLs",
            ok(200, "VersionFiles"), 404, tag="files",
        ),
        ("/api/v1/models/{name}/versions/{ref}/files/{path}", "GET"): op(
            "One file of a version, streamed; Range requests are answered with 206",
            (200, {"description": "The file's bytes; its ETag is the sha256", "content": octets}),
            404, tag="files",
        ),
    }  # fmt: skip
