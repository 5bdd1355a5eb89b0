"""Ordered schema migrations, each applied once and recorded in `registry_migrations`."""

from __future__ import annotations

from datetime import UTC, datetime

from peewee import Database
from playhouse.migrate import SchemaMigrator
from playhouse.migrate import migrate as migrate_schema

from registry.models import TABLES, BuildRow, DeploymentRow


def _create_tables(db: Database) -> None:
    db.create_tables(TABLES, safe=True)


def _add_column(table: str, field):
    def step(db: Database) -> None:
        if field.column_name not in {c.name for c in db.get_columns(table)}:
            migrate_schema(SchemaMigrator.from_database(db).add_column(table, field.column_name, field))

    return step


MIGRATIONS = [
    (1, "create tables", _create_tables),
    (2, "deployments.container_id", _add_column("deployments", DeploymentRow.container_id)),
    (3, "builds.alias", _add_column("builds", BuildRow.alias)),
    (4, "builds.retire", _add_column("builds", BuildRow.retire)),
]


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
