"""A small HTTP client for the hub's JSON API; turns transport failures into one clear error."""

from __future__ import annotations

import json
from functools import cached_property
from typing import TYPE_CHECKING
from urllib.parse import urlencode

if TYPE_CHECKING:
    import urllib3

DEFAULT_URL = "http://127.0.0.1:8000"


class HubUnreachable(Exception):
    pass


class HubReplyError(Exception):
    def __init__(self, status: int, body: dict):
        super().__init__(body.get("error") or f"HTTP {status}")
        self.status = status
        self.errors = body.get("errors") or []


class HubClient:
    def __init__(self, url: str = DEFAULT_URL, timeout: float = 120.0):
        self.url = url.rstrip("/")
        self.timeout = timeout

    @cached_property
    def http(self) -> urllib3.PoolManager:
        import urllib3  # not before it is needed: `aid serve` must let gevent patch the stdlib first

        return urllib3.PoolManager(retries=False, timeout=urllib3.Timeout(connect=5.0, read=self.timeout))

    def request(self, method: str, path: str, body: bytes | None = None, params: dict | None = None,
                content_type: str = "application/json") -> dict:  # fmt: skip
        query = {k: v for k, v in (params or {}).items() if v}
        url = f"{self.url}{path}" + (f"?{urlencode(query)}" if query else "")
        try:
            reply = self.http.request(method, url, body=body, headers={"Content-Type": content_type})
        except _http_errors() as e:
            raise HubUnreachable(
                f"No hub answers at {self.url} ({e.__class__.__name__}). Start one with 'aid serve' "
                "(or 'make run'), or point --hub / AIDHUB_URL at a running hub."
            ) from e
        data = _json(reply)
        if reply.status >= 400:
            raise HubReplyError(reply.status, data)
        return data

    def get(self, path: str, **params) -> dict:
        return self.request("GET", path, params=params)

    def post(self, path: str, body: dict | None = None, **params) -> dict:
        return self.request("POST", path, json.dumps(body or {}).encode(), params)

    def put(self, path: str, body: dict) -> dict:
        return self.request("PUT", path, json.dumps(body).encode())

    def upload(self, archive: bytes) -> dict:
        return self.request("POST", "/api/v1/models", archive, content_type="application/gzip")


def _http_errors() -> type[Exception]:
    import urllib3

    return urllib3.exceptions.HTTPError


def _json(reply: urllib3.BaseHTTPResponse) -> dict:
    try:
        body = json.loads(reply.data)
    except ValueError:
        return {"error": f"HTTP {reply.status}: {reply.data[:300].decode(errors='replace')}"}
    return body if isinstance(body, dict) else {"data": body}
