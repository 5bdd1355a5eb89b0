"""Schema migrations of the monitor tables, applied in order and recorded in `monitor_migrations`."""

from __future__ import annotations

import logging
from collections.abc import Callable
from datetime import UTC, datetime

from peewee import Database, PostgresqlDatabase

from monitor.tables import TABLES, MigrationRecord

log = logging.getLogger(__name__)

ADVISORY_LOCK_KEY = 0x61696468  # "aidh": serializes concurrent migrators on PostgreSQL


def _create_tables(db: Database) -> None:
    db.create_tables(TABLES, safe=True)


# Append only: never edit or reorder an applied migration.
MIGRATIONS: list[tuple[int, Callable[[Database], None]]] = [
    (1, _create_tables),
]


def _target(db: Database) -> Database:
    """The real database behind a DatabaseProxy (or the database itself)."""
    return getattr(db, "obj", None) or db


def _lock(db: Database) -> None:
    if isinstance(db, PostgresqlDatabase):
        db.execute_sql("SELECT pg_advisory_xact_lock(%s)", (ADVISORY_LOCK_KEY,))


def _applied() -> set[int]:
    return {row.id for row in MigrationRecord.select(MigrationRecord.id)}


def migrate(db: Database) -> list[int]:
    """Apply the migrations `db` lacks; idempotent. Returns the ids applied now."""
    db = _target(db)
    models = (MigrationRecord, *TABLES)
    with db.bind_ctx(models), db.atomic():
        _lock(db)
        db.create_tables([MigrationRecord], safe=True)
        done = _applied()
        todo = [(number, step) for number, step in MIGRATIONS if number not in done]
        for number, step in todo:
            step(db)
            MigrationRecord.create(id=number, applied_at=datetime.now(UTC).replace(tzinfo=None))
            log.info("applied monitor migration %d", number)
    return [number for number, _ in todo]
