"""Caps on request bodies, as plain WSGI in front of the predict fast path and Flask.

A body whose Content-Length is over the cap of its route is answered 413 before a byte of it is read;
a body without one (chunked) is read through a counter that stops at the cap. Every route has a cap:

| route | cap |
|---|---|
| `POST /api/v1/models/<name>/predict`, `POST /v2/.../infer`, file lists | AIDHUB_MAX_REQUEST_BODY (64Mi) |
| `PATCH /api/v1/blobs/<sha256>` (one part of a file) | AIDHUB_MAX_FILE_SIZE |
| `POST /api/v1/models` with a .tar.gz | AIDHUB_MAX_VERSION_SIZE |
| every other body (feedback, aliases, tokens, forms) | AIDHUB_MAX_JSON_BODY (1Mi) |
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from http import HTTPStatus

from hub.config import Config
from hub.errors import Invalid, TooLarge
from vocab.sizes import format_size

CALLS = re.compile(r"^/api/v1/models/.+/predict$|^/v2/models/.+/infer$")
BLOB_PART = re.compile(r"^/api/v1/blobs/[0-9a-f]{64}$")
FILE_LISTS = ("/api/v1/models", "/api/v1/blobs/missing")  # up to AIDHUB_MAX_FILES entries


@dataclass(frozen=True)
class Cap:
    limit: int
    setting: str
    what: str = "request body"
    advice: str = "Send less"

    def refusal(self, request: str, size: int | None) -> TooLarge:
        of = f" of {size:,} bytes" if size is not None else ""
        limit = f"{self.limit:,} bytes ({format_size(self.limit)})"
        return TooLarge(
            f"The {self.what}{of} is larger than the limit of {limit} for {request[:200]}. "
            f"{self.advice}, or raise {self.setting} on the hub."
        )


def caps(config: Config) -> dict[str, Cap]:
    shrink = "Shrink the package"
    return {
        "calls": Cap(config.max_request_body_bytes, "AIDHUB_MAX_REQUEST_BODY"),
        "json": Cap(config.max_json_body_bytes, "AIDHUB_MAX_JSON_BODY"),
        "part": Cap(config.max_file_bytes, "AIDHUB_MAX_FILE_SIZE", "upload", shrink),
        "archive": Cap(config.max_version_bytes, "AIDHUB_MAX_VERSION_SIZE", "upload", shrink),
    }


def route_kind(method: str, path: str, content_type: str) -> str:
    """Which cap a request's body gets."""
    json_body = content_type.split(";")[0].strip().lower() == "application/json"
    if method == "PATCH" and BLOB_PART.match(path):
        return "part"
    if method == "POST" and path == "/api/v1/models" and not json_body:
        return "archive"
    if CALLS.match(path) or path in FILE_LISTS:
        return "calls"
    return "json"


class BodyLimits:
    """Wraps the WSGI app `app`; caps every request's body as the table above says."""

    def __init__(self, app, config: Config):
        self.app = app
        self.caps = caps(config)

    def __call__(self, environ, start_response):
        method, path = environ.get("REQUEST_METHOD", "GET"), environ.get("PATH_INFO", "")
        cap = self.caps[route_kind(method, path, environ.get("CONTENT_TYPE", ""))]
        declared = (environ.get("CONTENT_LENGTH") or "").strip()
        if declared and not declared.isdigit():
            return _reply(
                start_response, Invalid(f"Content-Length {declared[:40]!r} is not a number of bytes.")
            )
        if declared and int(declared) > cap.limit:
            return _reply(start_response, cap.refusal(f"{method} {path}", int(declared)))
        if "wsgi.input" in environ:
            environ["wsgi.input"] = CappedInput(environ["wsgi.input"], cap, f"{method} {path}")
        return self.app(environ, start_response)


class CappedInput:
    """`wsgi.input` that raises TooLarge (answered 413 by the error handlers) once more bytes than the
    cap are read: for a body sent without Content-Length, or a server that does not stop at it."""

    def __init__(self, stream, cap: Cap, request: str):
        self.stream, self.cap, self.request, self.count = stream, cap, request, 0

    def _counted(self, data: bytes) -> bytes:
        self.count += len(data)
        if self.count > self.cap.limit:
            raise self.cap.refusal(self.request, None)
        return data

    def _size(self, size: int | None) -> int:
        """At most one byte past the cap is asked for, so a read past it is known without reading on."""
        left = self.cap.limit + 1 - self.count
        return left if size is None or size < 0 else min(size, left)

    def read(self, size: int | None = -1) -> bytes:
        return self._counted(self.stream.read(self._size(size)))

    def readline(self, size: int | None = -1) -> bytes:
        return self._counted(self.stream.readline(self._size(size)))

    def readlines(self, hint: int = -1) -> list[bytes]:
        return list(iter(self.readline, b""))

    def __iter__(self):
        return iter(self.readline, b"")


def _reply(start_response, error: Invalid | TooLarge) -> list[bytes]:
    data = json.dumps(error.to_dict()).encode()
    head = [("Content-Type", "application/json"), ("Content-Length", str(len(data)))]
    start_response(f"{error.status} {HTTPStatus(error.status).phrase}", head)
    return [data]
