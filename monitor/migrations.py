"""The monitor's schema steps, registered with the hub's one migration runner (database.migrations)."""

from __future__ import annotations

from peewee import SQL, Database, PostgresqlDatabase, fn

from database.migrations import add_column, add_index, create_tables, register
from monitor.datasets import DatasetSnapshot
from monitor.reviews import TABLES as REVIEW_TABLES
from monitor.rollups import COUNTERS, DAYS, GRAINS, MINUTE, QUARTER_HOURS, Grain
from monitor.shadows import ShadowRow
from monitor.tables import (
    COARSE_TABLES,
    QUARTER_TABLES,
    TABLES,
    DriftRun,
    Feedback,
    GrainStart,
    LatencyBucket,
    LatencyBucketDay,
    LatencyBucketHour,
    Rollup,
)
from vocab.times import utcnow

COVERING = {g: ("version_id", g, "bucket", "count") for g in ("minute", "hour", "day")}
SQLITE_STARTS = {"hour": "%Y-%m-%d %H:00:00", "day": "%Y-%m-%d 00:00:00"}


def _period_start(db: Database, grain: Grain, column):
    """SQL for the start of the quarter hour, hour or day holding `column` (a timestamp)."""
    postgres = isinstance(db, PostgresqlDatabase)
    if grain is QUARTER_HOURS and postgres:
        quarters = fn.floor(fn.date_part("minute", column) / 15)
        return fn.date_trunc("hour", column) + quarters * SQL("interval '15 minutes'")
    if grain is QUARTER_HOURS:  # 'YYYY-MM-DD HH:MM:SS', as peewee writes datetimes to SQLite
        seconds = fn.strftime("%s", column).cast("INTEGER")
        return fn.datetime(seconds / 900 * 900, "unixepoch")
    if postgres:
        return fn.date_trunc(grain.name, column)
    return fn.strftime(SQLITE_STARTS[grain.name], column)


def backfill_coarse_rollups(db: Database, grains=GRAINS[2:]) -> None:
    """Sum the minute rows a database already holds into the rows of `grains` (hour and day rows for
    migration 8), unless a grain has some."""
    for grain in grains:
        if not grain.rollup.select().exists():
            _backfill_rollups(db, grain)
        if not grain.buckets.select().exists():
            _backfill_buckets(db, grain)


def add_quarter_hours(db: Database) -> None:
    """Quarter-hour rollups: the tables, their rows summed from the minute rows still held, and, when
    older calls were counted (their minute rows pruned), the start from which they are complete."""
    db.create_tables(list(QUARTER_TABLES), safe=True)
    backfill_coarse_rollups(db, (QUARTER_HOURS,))
    if GrainStart.select().where(GrainStart.grain == QUARTER_HOURS.name).exists():
        return
    if not DAYS.rollup.select().exists():
        return  # nothing counted yet: complete from the start
    first = Rollup.select(Rollup.minute).order_by(Rollup.minute).first()
    oldest = first.minute if first else utcnow()
    since = QUARTER_HOURS.start(oldest - MINUTE) + QUARTER_HOURS.length  # the next whole quarter
    GrainStart.create(grain=QUARTER_HOURS.name, since=since)


def _backfill_rollups(db: Database, grain: Grain) -> None:
    start = _period_start(db, grain, Rollup.minute)
    sums = [fn.SUM(getattr(Rollup, c)) for c in COUNTERS]
    query = Rollup.select(Rollup.version_id, start, *sums).group_by(Rollup.version_id, start)
    table = grain.rollup
    fields = [table.version_id, grain.column(table), *(getattr(table, c) for c in COUNTERS)]
    table.insert_from(query, fields).execute()


def _backfill_buckets(db: Database, grain: Grain) -> None:
    start = _period_start(db, grain, LatencyBucket.minute)
    query = LatencyBucket.select(
        LatencyBucket.version_id, start, LatencyBucket.bucket, fn.SUM(LatencyBucket.count)
    ).group_by(LatencyBucket.version_id, start, LatencyBucket.bucket)
    table = grain.buckets
    fields = [table.version_id, grain.column(table), table.bucket, table.count]
    table.insert_from(query, fields).execute()


register(
    "monitor",
    [
        (1, "create tables", create_tables(TABLES)),
        (2, "drift runs", create_tables([DriftRun])),
        (3, "monitor_feedback.client", add_column("monitor_feedback", Feedback.client)),
        (4, "feedback by prediction and client", add_index(Feedback, ("prediction_id", "client"))),
        (5, "monitor_rollup.direct", add_column("monitor_rollup", Rollup.direct)),
        (6, "monitor_rollup.direct_errors", add_column("monitor_rollup", Rollup.direct_errors)),
        (7, "hourly and daily rollups", create_tables(COARSE_TABLES)),
        (8, "hourly and daily rollups from the minute rows", backfill_coarse_rollups),
        (9, "latency buckets readable from their index", add_index(LatencyBucket, COVERING["minute"])),
        (10, "hourly latency buckets likewise", add_index(LatencyBucketHour, COVERING["hour"])),
        (11, "daily latency buckets likewise", add_index(LatencyBucketDay, COVERING["day"])),
        (12, "dataset snapshots", create_tables([DatasetSnapshot])),
        (13, "shadow versions", create_tables([ShadowRow])),
        (14, "quarter-hour rollups, from the minute rows", add_quarter_hours),
        (15, "review queue", create_tables(REVIEW_TABLES)),
    ],
)
