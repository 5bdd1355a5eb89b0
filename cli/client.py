"""A small HTTP client for the hub's JSON API; turns transport failures into one clear error."""

from __future__ import annotations

import json
from functools import cached_property
from typing import TYPE_CHECKING
from urllib.parse import quote, urlencode

if TYPE_CHECKING:
    from typing import BinaryIO

    import urllib3

DEFAULT_URL = "http://127.0.0.1:8000"
BLOCK = 1024 * 1024  # a streamed request body is read 1 MiB at a time


class HubUnreachable(Exception):
    pass


class HubReplyError(Exception):
    def __init__(self, status: int, body: dict, retry_after: float | None = None):
        super().__init__(body.get("error") or f"HTTP {status}")
        self.status = status
        self.errors = body.get("errors") or []
        self.retry_after = retry_after  # seconds, when the hub said when to try again


class HubClient:
    def __init__(self, url: str = DEFAULT_URL, timeout: float = 120.0, token: str | None = None):
        self.url = url.rstrip("/")
        self.timeout = timeout
        self.token = token  # sent as `Authorization: Bearer ...` with every request

    @cached_property
    def http(self) -> urllib3.PoolManager:
        import urllib3  # not before it is needed: `aid serve` must let gevent patch the stdlib first

        return urllib3.PoolManager(
            retries=False, timeout=urllib3.Timeout(connect=5.0, read=self.timeout), blocksize=BLOCK
        )

    def request(self, method: str, path: str, body: bytes | None = None, params: dict | None = None,
                content_type: str = "application/json") -> dict:  # fmt: skip
        headers = {"Content-Type": content_type}
        return _checked(self.send(method, self._url(path, params), body=body, headers=headers))

    def _url(self, path: str, params: dict | None = None) -> str:
        query = {k: v for k, v in (params or {}).items() if v}
        return f"{self.url}{path}" + (f"?{urlencode(query)}" if query else "")

    def send(self, method: str, url: str, **kwargs) -> urllib3.BaseHTTPResponse:
        """One request, with the token; HubUnreachable when no hub answers."""
        if self.token:
            kwargs["headers"] = {**(kwargs.get("headers") or {}), "Authorization": f"Bearer {self.token}"}
        try:
            return self.http.request(method, url, **kwargs)
        except _http_errors() as e:
            raise HubUnreachable(
                f"No hub answers at {self.url} ({e.__class__.__name__}). Start one with 'aid serve' "
                "(or 'make run'), or point --hub / AIDHUB_URL at a running hub."
            ) from e

    def get(self, path: str, **params) -> dict:
        return self.request("GET", path, params=params)

    def post(self, path: str, body: dict | None = None, **params) -> dict:
        return self.request("POST", path, json.dumps(body or {}).encode(), params)

    def put(self, path: str, body: dict) -> dict:
        return self.request("PUT", path, json.dumps(body).encode())

    def upload(self, archive: bytes) -> dict:
        return self.request("POST", "/api/v1/models", archive, content_type="application/gzip")

    def missing_blobs(self, blobs: list[dict]) -> dict:
        """Which of `blobs` ({"sha256", "size"}) the hub lacks, each with the bytes it already holds."""
        return self.post("/api/v1/blobs/missing", {"blobs": blobs})

    def send_part(self, sha256: str, size: int, offset: int, body: BinaryIO, length: int) -> dict:
        """PATCH `length` bytes of blob `sha256` at `offset`, streamed from `body` (read 1 MiB at a
        time); the hub's {"sha256", "size", "offset", "complete"}."""
        url = f"{self.url}/api/v1/blobs/{sha256}?{urlencode({'offset': offset, 'size': size})}"
        headers = {"Content-Type": "application/octet-stream", "Content-Length": str(length)}
        return _checked(self.send("PATCH", url, body=body, headers=headers))

    def download(self, path: str, start: int = 0) -> urllib3.BaseHTTPResponse:
        """GET `path` (quoted here) as a stream, from byte `start` on (206) or whole (200); the caller
        reads it and calls release_conn()."""
        headers = {"Range": f"bytes={start}-"} if start else {}
        reply = self.send("GET", self._url(quote(path)), headers=headers, preload_content=False)
        if reply.status >= 400:
            _checked(reply)
        return reply


def _http_errors() -> type[Exception]:
    import urllib3

    return urllib3.exceptions.HTTPError


def _checked(reply: urllib3.BaseHTTPResponse) -> dict:
    """The reply's JSON; HubReplyError (with the hub's Retry-After) for a status of 400 or more."""
    data = _json(reply)
    if reply.status >= 400:
        raise HubReplyError(reply.status, data, _seconds(reply.headers.get("Retry-After")))
    return data


def _seconds(value: str | None) -> float | None:
    try:
        return max(0.0, float(value)) if value else None
    except ValueError:
        return None  # an HTTP date: the caller waits its own while


def _json(reply: urllib3.BaseHTTPResponse) -> dict:
    try:
        body = json.loads(reply.data)
    except ValueError:
        return {"error": f"HTTP {reply.status}: {reply.data[:300].decode(errors='replace')}"}
    return body if isinstance(body, dict) else {"data": body}
