"""Ordered schema migrations, each applied once and recorded in `registry_migrations`."""

from __future__ import annotations

from datetime import UTC, datetime

from peewee import Database

from registry.models import TABLES


def _create_tables(db: Database) -> None:
    db.create_tables(TABLES, safe=True)


MIGRATIONS = [(1, "create tables", _create_tables)]


def migrate(db: Database) -> list[int]:
    """Apply the migrations `db` lacks, in order; return the ids applied."""
    db.execute_sql(
        "CREATE TABLE IF NOT EXISTS registry_migrations "
        "(id INTEGER PRIMARY KEY, name VARCHAR(200), applied_at TIMESTAMP)"
    )
    done = {row[0] for row in db.execute_sql("SELECT id FROM registry_migrations").fetchall()}
    applied = []
    for number, name, step in MIGRATIONS:
        if number in done:
            continue
        with db.atomic():
            step(db)
            db.execute_sql(
                "INSERT INTO registry_migrations (id, name, applied_at) VALUES (%s, %s, %s)"
                % ((db.param,) * 3),
                (number, name, datetime.now(UTC).replace(tzinfo=None)),
            )
        applied.append(number)
    return applied
