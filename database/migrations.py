"""The one migration runner. Each component (registry, monitor) registers its ordered steps; `migrate`
applies the steps a database lacks (components by name, steps by number) in one transaction that holds
a lock (an advisory lock on PostgreSQL, an immediate write lock on SQLite), so hubs starting at once
migrate one after another.
Applied steps are recorded in `schema_migrations`. Append steps only; never edit an applied one.
Every step is idempotent (tables made if missing, columns added if missing), so a database made by
an older hub, which recorded its steps elsewhere, is brought up to date by running them all again."""

from __future__ import annotations

import contextlib
import logging
from collections.abc import Callable

from peewee import (
    CharField,
    CompositeKey,
    Database,
    DateTimeField,
    IntegerField,
    PostgresqlDatabase,
    SqliteDatabase,
)
from playhouse.migrate import SchemaMigrator
from playhouse.migrate import migrate as migrate_schema

from database.connection import BaseModel, database
from vocab.times import utcnow

log = logging.getLogger(__name__)
ADVISORY_LOCK_KEY = 0x61696468  # "aidh"
Step = Callable[[Database], None]
REGISTERED: dict[str, list[tuple[int, str, Step]]] = {}


class AppliedMigration(BaseModel):
    component = CharField(max_length=40)
    number = IntegerField()
    name = CharField(max_length=200)
    applied_at = DateTimeField(default=utcnow)

    class Meta:
        table_name = "schema_migrations"
        primary_key = CompositeKey("component", "number")


def register(component: str, steps: list[tuple[int, str, Step]]) -> None:
    """Make `steps` ((number, name, step), numbers ascending) the component's migrations."""
    numbers = [number for number, _, _ in steps]
    if numbers != sorted(set(numbers)):
        raise ValueError(f"The {component} migrations must have ascending, unique numbers: {numbers}.")
    REGISTERED[component] = list(steps)


def create_tables(tables) -> Step:
    return lambda db: db.create_tables(list(tables), safe=True)


def add_column(table: str, field) -> Step:
    def step(db: Database) -> None:
        if field.column_name not in {c.name for c in db.get_columns(table)}:
            migrate_schema(SchemaMigrator.from_database(db).add_column(table, field.column_name, field))

    return step


def add_index(model, columns: tuple[str, ...], unique: bool = False) -> Step:
    def step(db: Database) -> None:
        table = model._meta.table_name
        if tuple(columns) not in {tuple(i.columns) for i in db.get_indexes(table)}:
            migrate_schema(SchemaMigrator.from_database(db).add_index(table, columns, unique))

    return step


def migrate(db: Database | None = None) -> list[str]:
    """Apply every registered step `db` (default: the bound database) lacks; return them as
    'component:number'."""
    db = getattr(db, "obj", None) or db or database.obj
    applied = []
    with _locked(db):
        db.create_tables([AppliedMigration], safe=True)
        done = {(m.component, m.number) for m in AppliedMigration.select()}
        for component, steps in sorted(REGISTERED.items()):
            for number, name, step in steps:
                if (component, number) not in done:
                    step(db)
                    AppliedMigration.create(component=component, number=number, name=name)
                    log.info("applied %s migration %d (%s)", component, number, name)
                    applied.append(f"{component}:{number}")
    return applied


@contextlib.contextmanager
def _locked(db: Database):
    """A transaction that no other migrator can run beside."""
    sqlite = isinstance(db, SqliteDatabase)
    with db.atomic("IMMEDIATE") if sqlite else db.atomic(), db.bind_ctx([AppliedMigration]):
        if isinstance(db, PostgresqlDatabase):
            db.execute_sql("SELECT pg_advisory_xact_lock(%s)", (ADVISORY_LOCK_KEY,))
        yield
