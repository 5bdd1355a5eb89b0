"""A short-lived cache of where calls go ((name, ref) -> versions and endpoints), off the database.

An alias may split its calls between versions by weight (a canary: `1.0.0=90,1.1.0=10`); the entry
of a (name, ref) is then a `Split` of several routes, each taking a share of the buckets 0-99, and a
call picks the route of its bucket (a client key's hash, or a random one).

While the database does not answer, the last known route of each (name, ref) stays in use, so that
versions which serve go on answering; it is looked up again every `ttl` seconds until it answers."""

from __future__ import annotations

import threading
import time
from bisect import bisect_right
from collections.abc import Callable
from dataclasses import dataclass, replace
from itertools import accumulate

from database.connection import UNAVAILABLE
from hub.errors import HubError
from registry.models import VersionRow


@dataclass(frozen=True)
class Route:
    version: VersionRow
    url: str | None  # None when the version does not serve; `error` says why
    error: HubError | None
    expires: float


Load = Callable[[], list[tuple[VersionRow, Callable[[], str], int]]]  # (version, endpoint, percent)


@dataclass(frozen=True)
class Split:
    """Where the calls to one (name, ref) go: `routes[i]` takes the buckets below `bounds[i]`."""

    routes: tuple[Route, ...]
    bounds: tuple[int, ...]  # the weights added up: (90, 100) for 90 % and 10 %
    expires: float

    def pick(self, bucket: int) -> Route:
        """The route of `bucket` (0-99)."""
        return self.routes[min(bisect_right(self.bounds, bucket), len(self.routes) - 1)]


class Routes:
    """Entries live `ttl` seconds; this process's changes (deploy, alias, publish) clear them at once."""

    def __init__(self, ttl: float = 2.0, clock: Callable[[], float] = time.monotonic):
        self.ttl = ttl
        self.clock = clock
        self.entries: dict[tuple[str, str | None], Split] = {}
        self.lock = threading.Lock()

    def get(self, key: tuple[str, str | None], load: Load) -> Split:
        """`load` returns each version with a function giving its endpoint (or raising why there is
        none) and its weight."""
        split = self.entries.get(key)
        if split is None or split.expires < self.clock():
            try:
                split = self._load(load)
            except UNAVAILABLE:
                if split is None:
                    raise
                split = replace(split, expires=self.clock() + self.ttl)  # the last known, for now
            with self.lock:
                self.entries[key] = split
        return split

    def _load(self, load: Load) -> Split:
        expires = self.clock() + self.ttl
        parts = load()
        routes = tuple(self._route(version, endpoint, expires) for version, endpoint, _ in parts)
        return Split(routes, tuple(accumulate(weight for _, _, weight in parts)), expires)

    @staticmethod
    def _route(version: VersionRow, endpoint: Callable[[], str], expires: float) -> Route:
        version.model  # noqa: B018 - load the foreign key now, not on the request path later
        try:
            url, error = endpoint(), None
        except HubError as e:
            url, error = None, e
        return Route(version, url, error, expires)

    def clear(self) -> None:
        with self.lock:
            self.entries.clear()
