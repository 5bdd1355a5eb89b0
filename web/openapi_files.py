"""The OpenAPI operations and schemas of package files (blobs uploaded in parts, files pulled) and of
API tokens."""

from __future__ import annotations

from web.openapi_operations import json_body, ok, op
from web.openapi_schemas import array, extend, fields, obj, ref, typed

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
        **token_schemas(),
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


def token_schemas() -> dict:
    scopes = array(typed("string", enum=["read", "predict", "feedback", "publish", "deploy", "admin"]))
    token = fields(integer="id", string="owner shown", text="note", time="created_at expires_at")
    return {
        "Token": obj(token | {"scopes": scopes, "revoked": typed("boolean")}),
        "NewToken": extend("Token", {"token": typed("string", description="Shown once; store it now.")}),
        "TokenList": obj({"tokens": array(ref("Token"))}),
        "TokenRequest": obj(
            {"scopes": scopes, "owner": typed("string", description="Only an admin names another owner."),
             "expires": typed("string", description="e.g. 30d, 12h"), "note": typed("string")},
            ["scopes"],
        ),
        "WhoAmI": obj({"owner": typed("string", True), "scopes": scopes, "token": typed("integer", True)}),
    }  # fmt: skip


def token_operations() -> dict:
    return {
        ("/api/v1/whoami", "GET"): op(
            "Who the request's token names, and its scopes", ok(200, "WhoAmI"), tag="tokens"
        ),
        ("/api/v1/tokens", "POST"): op(
            "Create a token (shown once); an admin may create one for another owner",
            ok(201, "NewToken"), 400, body=json_body("TokenRequest"), tag="tokens",
        ),
        ("/api/v1/tokens", "GET"): op("Your tokens (an admin: all)", ok(200, "TokenList"), tag="tokens"),
        ("/api/v1/tokens/{token_id}", "DELETE"): op("Revoke a token", ok(200, "Token"), 404, tag="tokens"),
    }  # fmt: skip
