"""The JSON API for dataset snapshots: export a version's predictions, list a model's snapshots, send
one as stored or as reference data. Snapshots hold the logged inputs: every route needs the `publish`
scope and the model's owner (or an admin), never an anonymous caller (hub/datasets.py)."""

from __future__ import annotations

from flask import Blueprint, Response, jsonify, request, send_file, stream_with_context

from hub.datasets import MEDIA_TYPES
from hub.errors import Invalid
from web.api import split_ref
from web.auth import needs, owner_only, principal
from web.context import get_hub

blueprint = Blueprint("datasets", __name__, url_prefix="/api/v1")
OPTIONS = ("since", "labelled_only", "format")


def export_options() -> dict:
    """The export's options from a JSON body (or none: every prediction, as Parquet)."""
    body = request.get_json(silent=True) if request.content_length else {}
    if not isinstance(body, dict):
        raise Invalid('The body must be a JSON object such as {"since": "7d", "format": "parquet"}.')
    unknown = sorted(set(body) - set(OPTIONS))
    if unknown:
        raise Invalid(
            f"Unknown field(s) {', '.join(map(repr, unknown))}; the options are {', '.join(OPTIONS)}."
        )
    return body


@blueprint.post("/models/<path:name>/datasets")
@needs("publish")
def export(name):
    name, ref = split_ref(name)
    owner_only(name)
    body = export_options()
    snapshot, created = get_hub().export_dataset(
        name, ref, body.get("since"), body.get("labelled_only", False), body.get("format", "parquet")
    )
    return jsonify(snapshot), 201 if created else 200


@blueprint.get("/models/<path:name>/datasets")
@needs("publish")
def listing(name):
    name = split_ref(name)[0]
    owner_only(name)
    return jsonify(get_hub().datasets(name))


@blueprint.get("/datasets/<digest>")
@needs("publish")
def download(digest):
    where, snapshot = get_hub().dataset_file(digest, principal())
    sha256 = snapshot["digest"].removeprefix("sha256:")
    reply = send_file(
        where, mimetype=MEDIA_TYPES[snapshot["format"]], as_attachment=True, conditional=True,
        download_name=snapshot["filename"], etag=sha256, max_age=86400,
    )  # fmt: skip
    reply.headers["X-Checksum-Sha256"] = sha256
    return reply


@blueprint.get("/datasets/<digest>/reference.csv")
@needs("publish")
def reference(digest):
    snapshot, lines = get_hub().dataset_reference(digest, principal())
    headers = {
        "Content-Disposition": "attachment; filename=reference.csv",
        "X-Dataset-Digest": snapshot["digest"],
    }
    return Response(stream_with_context(lines), mimetype="text/csv", headers=headers)
