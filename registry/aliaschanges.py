"""The history of a model's aliases: every change of where an alias sends calls (`aid alias`,
`aid promote`, `aid rollback`, a build that moved the alias it waited for, an alert rule that rolled a
canary back), what it sent calls to before and after, and who changed it. Append-only; made by the
registry's step 9 (registry/migrations.py). Times are naive UTC."""

from __future__ import annotations

from datetime import datetime

from peewee import AutoField, DateTimeField, TextField

from database.connection import BaseModel


class AliasChange(BaseModel):
    id = AutoField()
    model = TextField()  # the model's name, as the alert history keeps it
    alias = TextField()
    before = TextField(null=True)  # '1.0.0=90,1.1.0=10' or '1.0.0'; None: the alias is new
    after = TextField()
    by = TextField()  # 'alias', 'promote', 'rollback', 'build 12', 'alert rule #3'
    at = DateTimeField()

    class Meta:
        table_name = "alias_changes"
        indexes = ((("model", "at"), False),)


def record(model: str, alias: str, before: str | None, after: str, by: str, now: datetime) -> None:
    if before != after:
        AliasChange.create(model=model, alias=alias, before=before, after=after, by=by, at=now)


def changes(model: str, limit: int = 50) -> list[AliasChange]:
    """The model's latest alias changes, newest first."""
    query = AliasChange.select().where(AliasChange.model == model)
    return list(query.order_by(AliasChange.at.desc(), AliasChange.id.desc()).limit(limit))
