"""Connecting one peewee database from a URL; SQLite gets WAL and foreign keys."""

from __future__ import annotations

from pathlib import Path

from peewee import Database, DatabaseProxy, Model
from playhouse.db_url import connect as connect_url

from registry.errors import RegistryError

database = DatabaseProxy()

SQLITE_PRAGMAS = {
    "journal_mode": "wal",
    "foreign_keys": 1,
    "synchronous": "normal",
    "busy_timeout": 10000,
    "cache_size": -32000,
}


class BaseModel(Model):
    class Meta:
        database = database


def connect(url: str) -> Database:
    """Open the database at `url` (sqlite:///path or postgresql://...)."""
    if url.startswith("sqlite:///"):
        Path(url.removeprefix("sqlite:///")).parent.mkdir(parents=True, exist_ok=True)
        return connect_url(url, pragmas=SQLITE_PRAGMAS, check_same_thread=False)
    if url.startswith(("postgres://", "postgresql://")):
        return connect_url(url)
    raise RegistryError(
        f"Database URL {url!r} is not supported: use sqlite:///PATH or postgresql://USER@HOST/DB."
    )
