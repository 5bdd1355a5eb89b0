"""The hub's background loops (the watcher, the collector of direct calls, drift, alerts and
housekeeping) are each a `Periodic`: a round every `interval` seconds on a daemon thread of its own,
until `stop()`. A round that raises is logged, the thread's database connection is dropped, and the
next round comes as usual, on a new connection: the database may be away for a while."""

from __future__ import annotations

import logging
import threading

import gevent
from gevent import monkey

from database.connection import close_quietly

log = logging.getLogger(__name__)


class Periodic:
    name = "periodic"  # the thread's name
    failure = "A background round failed"  # what the log says when a round raises
    interval = 60.0  # seconds between rounds, unless start() is given others

    def __init__(self) -> None:
        self.stopping = threading.Event()

    def start(self, interval: float | None = None) -> None:
        every = self.interval if interval is None else interval
        threading.Thread(target=self._loop, args=(every,), name=self.name, daemon=True).start()

    def stop(self) -> None:
        self.stopping.set()

    def run_once(self) -> object:
        raise NotImplementedError

    def after_round(self) -> None:
        """Called after each round, whatever happened in it."""

    def _loop(self, interval: float) -> None:
        while not self.stopping.wait(interval):
            try:
                self.run_once()
            except Exception:
                log.exception(self.failure)
                close_quietly()  # a database that went away left a broken connection: open anew next round
            finally:
                self.after_round()


def after_callers() -> None:
    """Under gevent (`aid serve`), wait until no request is ready to run: a background round that is
    long work on the event loop lets the callers go first between its steps."""
    if monkey.is_module_patched("threading"):
        gevent.idle()
