"""Housekeeping: every 10 minutes, delete logged calls older than AIDHUB_RETENTION_DAYS (each version's
first calls stay: they may be its drift reference) and minute and hour rollups past their retention
(monitor.compaction). Day rollups, and so every scorecard's all-time numbers, are kept. Also deletes
uploaded blobs and parts that no version took within AIDHUB_UPLOAD_TTL."""

from __future__ import annotations

import logging
from collections.abc import Callable
from datetime import datetime

from peewee import Database

from hub.periodic import Periodic
from monitor import compaction
from vocab.times import utcnow

log = logging.getLogger(__name__)
EVERY_S = 600.0


class Housekeeping(Periodic):
    name = "housekeeping"
    failure = "Deleting logged calls and rollups past their retention failed"
    interval = EVERY_S

    def __init__(
        self,
        db: Database,
        retention_days: int,
        keep_first: int,
        clock: Callable[[], datetime] = utcnow,
    ):
        super().__init__()
        self.db = db
        self.retention_days = retention_days  # 0: logged calls are kept forever
        self.keep_first = keep_first  # a version's first N calls: its drift reference without reference data
        self.clock = clock
        self.extra: list[Callable[[], int]] = []

    def also(self, task: Callable[[], int]) -> None:
        """Run `task` (returning how many things it deleted) each round too."""
        self.extra.append(task)

    def run_once(self) -> dict[str, int]:
        """Prune now; the rows deleted, by kind."""
        deleted = compaction.prune(self.clock(), self.retention_days, self.keep_first)
        if self.extra:
            deleted["stale uploads"] = sum(task() for task in self.extra)
        if any(deleted.values()):
            log.info("Housekeeping deleted %s", ", ".join(f"{n} {kind}" for kind, n in deleted.items()))
        return deleted

    def after_round(self) -> None:
        """Close this thread's connection between runs (peewee keeps one per thread)."""
        if not self.db.is_closed():
            self.db.close()
