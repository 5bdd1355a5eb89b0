"""One peewee DatabaseProxy for every table, opened from a URL; SQLite gets WAL and foreign keys."""

from __future__ import annotations

import json
import sqlite3
from pathlib import Path

from peewee import Database, DatabaseProxy, InterfaceError, Model, OperationalError, SqliteDatabase, TextField
from playhouse.db_url import connect as connect_url

database = DatabaseProxy()
UNAVAILABLE = (OperationalError, InterfaceError)  # the database does not answer, or dropped the connection

SQLITE_PRAGMAS = {
    "journal_mode": "wal",
    "foreign_keys": 1,
    "synchronous": "normal",
    "busy_timeout": 10000,
    "cache_size": -32000,
}


class DatabaseUrlInvalid(ValueError):
    """The database URL names no database this hub can open."""


class BaseModel(Model):
    class Meta:
        database = database
        legacy_table_names = False


class JSONField(TextField):
    def db_value(self, value):
        return None if value is None else json.dumps(value, sort_keys=True)

    def python_value(self, value):
        return None if value is None else json.loads(value)


def connect(url: str) -> Database:
    """Open the database at `url` (sqlite:///path or postgresql://...)."""
    if url.startswith("sqlite:///"):
        Path(url.removeprefix("sqlite:///")).parent.mkdir(parents=True, exist_ok=True)
        return connect_url(url, pragmas=SQLITE_PRAGMAS, check_same_thread=False)
    if url.startswith(("postgres://", "postgresql://")):
        return connect_url(url)
    raise DatabaseUrlInvalid(
        f"Database URL {url!r} is not supported: use sqlite:///PATH or postgresql://USER@HOST/DB."
    )


def close_quietly() -> None:
    """Close this thread's connection, whatever state it is in (a server that went away leaves a
    broken one), so that the next query opens a new one."""
    try:
        database.close()
    except Exception:  # noqa: S110 - closing a broken connection may fail; peewee forgets it anyway
        pass


def values_sql(param: str, columns: int, rows: int) -> str:
    """The VALUES list of a multi-row INSERT: `rows` groups of `columns` placeholders `param`."""
    return ", ".join(["(" + ", ".join([param] * columns) + ")"] * rows)


def rows_per_statement(columns: int, cap: int = 1000) -> int:
    """How many rows of `columns` values one INSERT may carry on the bound database."""
    limit = 32_766 if sqlite3.sqlite_version_info >= (3, 32, 0) else 999
    if not isinstance(database.obj, SqliteDatabase):
        limit = 32_767  # PostgreSQL allows 65535 bind parameters; stay well inside
    return max(1, min(cap, limit // columns))
