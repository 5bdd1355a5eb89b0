"""Retention: old raw predictions and old fine-grained rollups are deleted; day rollups stay forever.

Rollups are written through to every period (monitor.rollups), so nothing here sums or moves counts:
compaction is only deletion, and a crash between two deletes leaves every remaining row correct.
- Minute rows older than MINUTES.kept (3 days), quarter-hour rows older than QUARTER_HOURS.kept (30
  days) and hour rows older than HOURS.kept (90 days) go, with one period of the next grain as margin,
  so a window that starts at the edge still finds its rows.
- Prediction rows older than `retention_days` go, except each version's first `keep_first` successful
  calls (and the calls before them): without reference data, drift compares with those.
Deletes run in chunks, each its own transaction, so the prediction log's writers are never held up long.
"""

from __future__ import annotations

import logging
from datetime import datetime, timedelta

from peewee import Model

from database.connection import database
from monitor.rollups import DAYS, GRAINS, Grain
from monitor.tables import Prediction

log = logging.getLogger(__name__)
CHUNK = 5000


def prune(now: datetime, retention_days: int, keep_first: int = 500) -> dict[str, int]:
    """Delete what is past retention (see the module); the rows deleted, by kind.
    `retention_days` 0 keeps every prediction."""
    versions = _versions()
    deleted = {"predictions": 0}
    if retention_days > 0:
        cutoff = now - timedelta(days=retention_days)
        deleted["predictions"] = sum(_prune_predictions(v, cutoff, keep_first) for v in versions)
    for grain, coarser in zip(GRAINS, GRAINS[1:], strict=False):
        cutoff = now - grain.kept - coarser.length
        deleted[f"{grain.name}_rows"] = sum(_prune_grain(grain, v, cutoff) for v in versions)
    return deleted


def _versions() -> list[int]:
    """Every version with rollups (so, every version with logged predictions)."""
    table = DAYS.rollup
    return [vid for (vid,) in table.select(table.version_id).distinct().tuples()]


def _prune_grain(grain: Grain, version_id: int, cutoff: datetime) -> int:
    deleted = 0
    for table in (grain.rollup, grain.buckets):
        older = (table.version_id == version_id) & (grain.column(table) < cutoff)
        deleted += delete_in_chunks(table, older)
    return deleted


def reference_boundary(version_id: int, keep_first: int) -> str | None:
    """The id of the version's `keep_first`-th successful call with a payload (the last of its
    first-calls drift reference; the last such call when it has fewer); None when it has none."""
    if keep_first <= 0:
        return None
    successful = Prediction.select(Prediction.id).where(
        Prediction.version_id == version_id,
        Prediction.status == "ok",
        Prediction.truncated == False,  # noqa: E712 - peewee builds SQL from the comparison
        Prediction.inputs.is_null(False),
    )
    found = successful.order_by(Prediction.id).offset(keep_first - 1).limit(1).scalar()
    return found or successful.order_by(Prediction.id.desc()).limit(1).scalar()


def _prune_predictions(version_id: int, cutoff: datetime, keep_first: int) -> int:
    older = (Prediction.version_id == version_id) & (Prediction.created_at < cutoff)
    if not Prediction.select().where(older).exists():
        return 0
    boundary = reference_boundary(version_id, keep_first)
    if boundary is not None:
        older &= Prediction.id > boundary
    return delete_in_chunks(Prediction, older)


def delete_in_chunks(table: type[Model], where, chunk: int = CHUNK) -> int:
    """Delete the rows matching `where`, `chunk` at a time, each chunk in its own transaction."""
    key = table._meta.primary_key
    deleted = 0
    while True:
        with database.atomic():
            some = table.select(key).where(where).limit(chunk)
            count = table.delete().where(key.in_(some)).execute()
        deleted += count
        if count < chunk:
            return deleted
