"""The registry's tables: models, immutable versions, aliases, deployments and builds."""

from __future__ import annotations

from peewee import (
    AutoField,
    BigIntegerField,
    CharField,
    DateTimeField,
    FloatField,
    ForeignKeyField,
    IntegerField,
    TextField,
)

from database.connection import BaseModel, JSONField
from vocab.states import BuildStatus, DeploymentStatus
from vocab.times import utcnow


class ModelRow(BaseModel):
    id = AutoField()
    name = CharField(max_length=130, unique=True)
    task = CharField(max_length=100, index=True)
    summary = TextField(default="")
    tags = JSONField(default=list)
    owner = CharField(max_length=100, default="")
    created_at = DateTimeField(default=utcnow)
    updated_at = DateTimeField(default=utcnow)

    class Meta:
        table_name = "models"


class VersionRow(BaseModel):
    id = AutoField()
    model = ForeignKeyField(ModelRow, backref="versions", on_delete="CASCADE")
    version = CharField(max_length=100)
    digest = CharField(max_length=64, index=True)
    size = BigIntegerField()
    manifest = JSONField()
    inputs = JSONField()
    outputs = JSONField()
    card = TextField(default="")
    examples = JSONField(null=True)
    created_at = DateTimeField(default=utcnow)

    class Meta:
        table_name = "versions"
        indexes = ((("model", "version"), True),)


class FileRow(BaseModel):
    """One file of a version: its path in the package and the blob that holds its bytes."""

    id = AutoField()
    version = ForeignKeyField(VersionRow, backref="files", on_delete="CASCADE")
    path = TextField()
    sha256 = CharField(max_length=64, index=True)
    size = BigIntegerField()

    class Meta:
        table_name = "version_files"
        indexes = ((("version", "path"), True),)


class AliasRow(BaseModel):
    id = AutoField()
    model = ForeignKeyField(ModelRow, backref="aliases", on_delete="CASCADE")
    name = CharField(max_length=64)
    version = ForeignKeyField(VersionRow, on_delete="CASCADE")  # the base: the largest weight
    # [["1.0.0", 90], ["1.1.0", 10]] (version, percent; a list: the order written decides which buckets
    # each version takes) when calls are split; None: every call to `version`
    weights = JSONField(null=True)
    previous = JSONField(null=True)  # the assignment before the last change ([["1.0.0", 100]]); None: none
    updated_at = DateTimeField(default=utcnow)

    class Meta:
        table_name = "aliases"
        indexes = ((("model", "name"), True),)


class DeploymentRow(BaseModel):
    id = AutoField()
    version = ForeignKeyField(VersionRow, unique=True, on_delete="CASCADE")
    status = CharField(max_length=20, default=DeploymentStatus.STARTING)
    runner = CharField(max_length=20, default="")
    env_key = CharField(max_length=64, default="")
    url = CharField(max_length=300, default="")
    pid = IntegerField(null=True)
    container_id = CharField(max_length=80, default="")
    port = IntegerField(null=True)
    log_path = TextField(default="")
    error = TextField(default="")
    restarts = IntegerField(default=0)
    updated_at = DateTimeField(default=utcnow)

    class Meta:
        table_name = "deployments"


class BuildRow(BaseModel):
    id = AutoField()
    version = ForeignKeyField(VersionRow, backref="builds", on_delete="CASCADE")
    status = CharField(max_length=20, default=BuildStatus.QUEUED)
    log = TextField(default="")
    steps = JSONField(default=list)  # [{"name", "status", "seconds"}]
    alias = CharField(max_length=64, default="")  # moved to this version when the build succeeds
    retire = IntegerField(null=True)  # then the version (id) the alias left is stopped, drained
    created_at = DateTimeField(default=utcnow)
    started_at = DateTimeField(null=True)
    finished_at = DateTimeField(null=True)
    seconds = FloatField(null=True)

    class Meta:
        table_name = "builds"


TABLES = [ModelRow, VersionRow, FileRow, AliasRow, DeploymentRow, BuildRow]
