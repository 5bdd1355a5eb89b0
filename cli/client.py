"""A small HTTP client for the hub's JSON API; turns transport failures into one clear error."""

from __future__ import annotations

import httpx

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
        self.http = httpx.Client(base_url=self.url, timeout=timeout)

    def request(self, method: str, path: str, **kwargs) -> dict:
        try:
            reply = self.http.request(method, path, **kwargs)
        except httpx.TransportError as e:
            raise HubUnreachable(
                f"No hub answers at {self.url} ({e.__class__.__name__}). Start one with 'aid serve' "
                "(or 'make run'), or point --hub / AIDHUB_URL at a running hub."
            ) from e
        body = _json(reply)
        if reply.status_code >= 400:
            raise HubReplyError(reply.status_code, body)
        return body

    def get(self, path: str, **params) -> dict:
        return self.request("GET", path, params={k: v for k, v in params.items() if v})

    def post(self, path: str, body: dict | None = None, **params) -> dict:
        return self.request("POST", path, json=body or {}, params={k: v for k, v in params.items() if v})

    def put(self, path: str, body: dict) -> dict:
        return self.request("PUT", path, json=body)

    def upload(self, archive: bytes) -> dict:
        headers = {"Content-Type": "application/gzip"}
        return self.request("POST", "/api/v1/models", content=archive, headers=headers)


def _json(reply: httpx.Response) -> dict:
    try:
        body = reply.json()
    except ValueError:
        return {"error": f"HTTP {reply.status_code}: {reply.text[:300]}"}
    return body if isinstance(body, dict) else {"data": body}
