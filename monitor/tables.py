"""Peewee tables of the monitor, bound to their own DatabaseProxy.

Timestamps are stored as naive datetimes in UTC (SQLite and PostgreSQL `timestamp` alike);
`utc_naive` turns any datetime or epoch-seconds value into that form.
"""

from __future__ import annotations

import sqlite3
from datetime import UTC, datetime

from peewee import (
    AutoField,
    BooleanField,
    DatabaseProxy,
    DateTimeField,
    FloatField,
    IntegerField,
    Model,
    SmallIntegerField,
    SqliteDatabase,
    TextField,
)

database = DatabaseProxy()


def utc_naive(value: datetime | float) -> datetime:
    """A naive UTC datetime from an aware/naive (assumed UTC) datetime or epoch seconds."""
    if isinstance(value, int | float):
        value = datetime.fromtimestamp(value, UTC)
    if value.tzinfo is not None:
        value = value.astimezone(UTC).replace(tzinfo=None)
    return value


def minute_of(value: datetime) -> datetime:
    """The naive UTC datetime truncated to its minute."""
    return utc_naive(value).replace(second=0, microsecond=0)


def rows_per_statement(columns: int, cap: int = 1000) -> int:
    """How many rows of `columns` values one INSERT may carry on the bound database."""
    limit = 32_766 if sqlite3.sqlite_version_info >= (3, 32, 0) else 999
    if not isinstance(database.obj, SqliteDatabase):
        limit = 32_767  # PostgreSQL allows 65535 bind parameters; stay well inside
    return max(1, min(cap, limit // columns))


class BaseModel(Model):
    class Meta:
        database = database
        legacy_table_names = False


class MigrationRecord(BaseModel):
    id = IntegerField(primary_key=True)
    applied_at = DateTimeField()

    class Meta:
        table_name = "monitor_migrations"


class Prediction(BaseModel):
    id = TextField(primary_key=True)  # 26-char ULID: time-ordered
    version_id = IntegerField()
    model = TextField()
    version = TextField()
    created_at = DateTimeField()
    latency_ms = FloatField()
    status = TextField()  # 'ok' | 'error'
    error = TextField(null=True)
    source = TextField()  # 'hub' | 'direct'
    inputs = TextField(null=True)  # JSON, size-capped
    outputs = TextField(null=True)  # JSON, size-capped
    truncated = BooleanField(default=False)

    class Meta:
        table_name = "monitor_prediction"
        indexes = ((("version_id", "created_at"), False),)


class Feedback(BaseModel):
    id = AutoField()
    prediction_id = TextField(null=True, index=True)
    version_id = IntegerField(null=True)
    model = TextField()
    correct = BooleanField(null=True)
    label = TextField(null=True)
    rating = SmallIntegerField(null=True)
    comment = TextField(null=True)
    created_at = DateTimeField()

    class Meta:
        table_name = "monitor_feedback"
        indexes = ((("version_id", "created_at"), False),)


class Rollup(BaseModel):
    """Counts per version per minute, kept up to date as predictions and feedback arrive."""

    id = AutoField()
    version_id = IntegerField()
    minute = DateTimeField()
    requests = IntegerField(default=0)
    errors = IntegerField(default=0)
    latency_sum_ms = FloatField(default=0.0)
    feedback = IntegerField(default=0)
    correct = IntegerField(default=0)
    incorrect = IntegerField(default=0)
    rating_sum = IntegerField(default=0)
    rating_count = IntegerField(default=0)

    class Meta:
        table_name = "monitor_rollup"
        indexes = ((("version_id", "minute"), True),)


class LatencyBucket(BaseModel):
    """Latency histogram per version per minute; `bucket` indexes `rollups.BOUNDS_MS`."""

    id = AutoField()
    version_id = IntegerField()
    minute = DateTimeField()
    bucket = SmallIntegerField()
    count = IntegerField(default=0)

    class Meta:
        table_name = "monitor_latency_bucket"
        indexes = ((("version_id", "minute", "bucket"), True),)


TABLES = (Prediction, Feedback, Rollup, LatencyBucket)
