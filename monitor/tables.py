"""Peewee tables of the monitor, on the hub's one database (database.connection).

Timestamps are stored as naive datetimes in UTC (SQLite and PostgreSQL `timestamp` alike);
`vocab.times.utc_naive` turns any datetime or epoch-seconds value into that form.
"""

from __future__ import annotations

from peewee import (
    AutoField,
    BooleanField,
    DateTimeField,
    FloatField,
    IntegerField,
    SmallIntegerField,
    TextField,
)

from database.connection import BaseModel


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
    client = TextField(default="")  # who gave it (a token's owner or an address): one per prediction

    class Meta:
        table_name = "monitor_feedback"
        indexes = ((("version_id", "created_at"), False), (("prediction_id", "client"), False))


class _Counts(BaseModel):
    """The counters every rollup row carries (rollups.COUNTERS), whatever its period."""

    requests = IntegerField(default=0)
    errors = IntegerField(default=0)
    latency_sum_ms = FloatField(default=0.0)
    feedback = IntegerField(default=0)
    correct = IntegerField(default=0)
    incorrect = IntegerField(default=0)
    rating_sum = IntegerField(default=0)
    rating_count = IntegerField(default=0)
    direct = IntegerField(default=0)  # requests whose Prediction.source is 'direct'
    direct_errors = IntegerField(default=0)


class Rollup(_Counts):
    """Counts per version per minute, kept up to date as predictions and feedback arrive."""

    id = AutoField()
    version_id = IntegerField()
    minute = DateTimeField()

    class Meta:
        table_name = "monitor_rollup"
        indexes = ((("version_id", "minute"), True),)


class RollupQuarter(_Counts):
    """The same counts per version per quarter hour (a day's scorecard in 15-minute steps reads these)."""

    id = AutoField()
    version_id = IntegerField()
    quarter_hour = DateTimeField()  # the start of the 15 minutes: :00, :15, :30 or :45

    class Meta:
        table_name = "monitor_rollup_quarter_hour"
        indexes = ((("version_id", "quarter_hour"), True),)


class RollupHour(_Counts):
    """The same counts per version per hour (written with the minute rows, kept longer)."""

    id = AutoField()
    version_id = IntegerField()
    hour = DateTimeField()

    class Meta:
        table_name = "monitor_rollup_hour"
        indexes = ((("version_id", "hour"), True),)


class RollupDay(_Counts):
    """The same counts per version per day (written with the minute rows, kept forever)."""

    id = AutoField()
    version_id = IntegerField()
    day = DateTimeField()

    class Meta:
        table_name = "monitor_rollup_day"
        indexes = ((("version_id", "day"), True),)


class LatencyBucket(BaseModel):
    """Latency histogram per version per minute; `bucket` indexes `rollups.BOUNDS_MS`."""

    id = AutoField()
    version_id = IntegerField()
    minute = DateTimeField()
    bucket = SmallIntegerField()
    count = IntegerField(default=0)

    class Meta:
        table_name = "monitor_latency_bucket"
        indexes = (
            (("version_id", "minute", "bucket"), True),
            (("version_id", "minute", "bucket", "count"), False),  # a scorecard reads the index alone
        )


class LatencyBucketQuarter(BaseModel):
    id = AutoField()
    version_id = IntegerField()
    quarter_hour = DateTimeField()
    bucket = SmallIntegerField()
    count = IntegerField(default=0)

    class Meta:
        table_name = "monitor_latency_bucket_quarter_hour"
        indexes = (
            (("version_id", "quarter_hour", "bucket"), True),
            (("version_id", "quarter_hour", "bucket", "count"), False),  # a scorecard reads the index alone
        )


class LatencyBucketHour(BaseModel):
    id = AutoField()
    version_id = IntegerField()
    hour = DateTimeField()
    bucket = SmallIntegerField()
    count = IntegerField(default=0)

    class Meta:
        table_name = "monitor_latency_bucket_hour"
        indexes = (
            (("version_id", "hour", "bucket"), True),
            (("version_id", "hour", "bucket", "count"), False),  # a scorecard reads the index alone
        )


class LatencyBucketDay(BaseModel):
    id = AutoField()
    version_id = IntegerField()
    day = DateTimeField()
    bucket = SmallIntegerField()
    count = IntegerField(default=0)

    class Meta:
        table_name = "monitor_latency_bucket_day"
        indexes = (
            (("version_id", "day", "bucket"), True),
            (("version_id", "day", "bucket", "count"), False),  # a scorecard reads the index alone
        )


class GrainStart(BaseModel):
    """From when a period table added after the hub first ran is complete: its rows of older periods
    could not be made (the minute rows they would sum were gone), so a scorecard reading older periods
    uses a coarser table. No row: complete from the start."""

    grain = TextField(primary_key=True)  # rollups.Grain.name
    since = DateTimeField()

    class Meta:
        table_name = "monitor_grain_start"


class DriftRun(BaseModel):
    """One comparison of a version's recent inputs (and outputs) with its reference."""

    id = AutoField()
    version_id = IntegerField(index=True)
    created_at = DateTimeField()
    window_start = DateTimeField()
    window_end = DateTimeField()
    reference = TextField()  # 'package' (its reference_data) | 'first predictions'
    status = TextField()  # vocab.states.DriftRunStatus
    error = TextField(null=True)
    share = FloatField(null=True)  # drifted input columns / input columns with a verdict
    drifted = BooleanField(null=True)  # the dataset verdict on the inputs
    result = TextField(null=True)  # JSON: {"inputs": {...}, "outputs": {...} | null}
    report = TextField(null=True)  # the blob digest of the Evidently HTML report

    class Meta:
        table_name = "monitor_drift_run"


TABLES = (Prediction, Feedback, Rollup, LatencyBucket, DriftRun)  # migration step 1: never change
COARSE_TABLES = (RollupHour, RollupDay, LatencyBucketHour, LatencyBucketDay)  # migration step 7: never change
QUARTER_TABLES = (RollupQuarter, LatencyBucketQuarter, GrainStart)  # migration step 14
