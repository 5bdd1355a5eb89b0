"""A short-lived cache of where calls go ((name, ref) -> version and endpoint), off the database.

While the database does not answer, the last known route of each (name, ref) stays in use, so that
versions which serve go on answering; it is looked up again every `ttl` seconds until it answers."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, replace

from database.connection import UNAVAILABLE
from hub.errors import HubError
from registry.models import VersionRow


@dataclass(frozen=True)
class Route:
    version: VersionRow
    url: str | None  # None when the version does not serve; `error` says why
    error: HubError | None
    expires: float


class Routes:
    """Entries live `ttl` seconds; this process's changes (deploy, alias, publish) clear them at once."""

    def __init__(self, ttl: float = 2.0, clock: Callable[[], float] = time.monotonic):
        self.ttl = ttl
        self.clock = clock
        self.entries: dict[tuple[str, str | None], Route] = {}
        self.lock = threading.Lock()

    def get(
        self, key: tuple[str, str | None], load: Callable[[], tuple[VersionRow, Callable[[], str]]]
    ) -> Route:
        """`load` returns the version and a function giving its endpoint or raising why there is none."""
        route = self.entries.get(key)
        if route is None or route.expires < self.clock():
            try:
                route = self._load(load)
            except UNAVAILABLE:
                if route is None:
                    raise
                route = replace(route, expires=self.clock() + self.ttl)  # the last known, for now
            with self.lock:
                self.entries[key] = route
        return route

    def _load(self, load: Callable[[], tuple[VersionRow, Callable[[], str]]]) -> Route:
        version, endpoint = load()
        version.model  # noqa: B018 - load the foreign key now, not on the request path later
        try:
            url, error = endpoint(), None
        except HubError as e:
            url, error = None, e
        return Route(version, url, error, self.clock() + self.ttl)

    def clear(self) -> None:
        with self.lock:
            self.entries.clear()
