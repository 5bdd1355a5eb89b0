"""The JSON API for package files: blobs uploaded in parts, a version's files listed and sent."""

from __future__ import annotations

from flask import Blueprint, jsonify, request, send_file

from web.api import json_body, split_ref
from web.auth import needs
from web.context import get_hub

blueprint = Blueprint("files", __name__, url_prefix="/api/v1")


@blueprint.post("/blobs/missing")
@needs("publish")
def missing_blobs():
    return jsonify(get_hub().missing_blobs(json_body().get("blobs")))


@blueprint.patch("/blobs/<sha256>")
@needs("publish")
def upload_part(sha256):
    args = request.args
    reply = get_hub().upload_part(
        sha256, args.get("offset", ""), args.get("size", ""), request.stream, request.content_length
    )
    return jsonify(reply)


@blueprint.get("/models/<path:name>/versions/<ref>/files")
@needs("read")
def version_files(name, ref):
    return jsonify(get_hub().version_files(split_ref(name)[0], ref))


@blueprint.get("/models/<path:name>/versions/<ref>/files/<path:path>")
@needs("read")
def version_file(name, ref, path):
    where, sha256, _size = get_hub().version_file(split_ref(name)[0], ref, path)
    reply = send_file(
        where, mimetype="application/octet-stream", as_attachment=True,
        download_name=path.rsplit("/", 1)[-1], conditional=True, etag=sha256, max_age=86400,
    )  # fmt: skip
    reply.headers["X-Checksum-Sha256"] = sha256
    return reply
