"""Dataset snapshots of the prediction log: a version's logged inputs, the model's outputs and the
feedback, as rows read in keyset-paginated chunks (memory stays flat whatever the number of rows).

Row layout (docs/datasets.md): `prediction_id`, `created_at`, `item`, then each input flattened as the
reference data is (`<input>` for a scalar per item, `<input>.<i>` for the elements of a fixed-size
item), each output likewise as `output.<name>[.<i>]`, then `feedback.label`, `feedback.correct`,
`feedback.rating` and `truncated`. A prediction of one item (the usual call) is one row; a batched
call of n items is n rows sharing the prediction id and its feedback. A tensor whose item size is
dynamic, or over MAX_WIDTH elements, is one JSON column. A payload the log capped (`truncated`) exports
its columns empty; calls that failed (status 'error') are not exported.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import datetime
from math import prod

import orjson
from peewee import (
    AutoField,
    BigIntegerField,
    CharField,
    DateTimeField,
    IntegerField,
    IntegrityError,
    TextField,
    fn,
)

from database.connection import BaseModel, JSONField, database
from monitor.errors import MonitorError
from monitor.tables import Feedback, Prediction
from vocab.times import utcnow

MAX_WIDTH = 1024  # elements per item beyond which a tensor is kept as one JSON column
CHUNK = 5000  # predictions read per query
FEEDBACK_FIELDS = ("label", "correct", "rating")


class DatasetSnapshot(BaseModel):
    """One export: immutable, named by the sha256 of its file (a blob), per version."""

    id = AutoField()
    version_id = IntegerField(index=True)
    digest = CharField(max_length=64, index=True)  # sha256 hex of the file
    format = TextField()  # 'parquet' | 'csv' | 'jsonl'
    rows = BigIntegerField()
    labels = BigIntegerField()  # rows with a feedback label
    size = BigIntegerField()
    columns = JSONField()  # [{"name", "type", "role"}]
    filter = JSONField()  # {"version", "since", "from", "labelled_only"}
    created_at = DateTimeField(default=utcnow)

    class Meta:
        table_name = "monitor_dataset_snapshot"
        indexes = ((("version_id", "digest"), True),)


class DatasetSchemaInvalid(MonitorError):
    """The version's tensors cannot be laid out as distinct columns."""


@dataclass(frozen=True)
class Column:
    name: str
    type: str  # 'float' | 'int' | 'bool' | 'string' | 'time' | 'json'
    role: str  # 'meta' | 'input' | 'output' | 'feedback'

    def to_dict(self) -> dict:
        return {"name": self.name, "type": self.type, "role": self.role}


def _kind(dtype: str | None) -> str:
    dtype = dtype or ""
    if dtype.startswith("float"):
        return "float"
    if dtype.startswith(("int", "uint")):
        return "int"
    return "bool" if dtype == "bool" else "string"


INT64 = range(-(2**63), 2**63)


def _to_int(value) -> int:
    """An int64 from an integer (or an integral float); ValueError or OverflowError for anything else."""
    if isinstance(value, str) or (isinstance(value, float) and not value.is_integer()):
        raise ValueError(value)
    number = int(value)
    if number not in INT64:
        raise OverflowError(value)
    return number


def _to_bool(value) -> bool:
    if isinstance(value, bool) or value in (0, 1):
        return bool(value)
    raise ValueError(value)


CASTS = {"float": float, "int": _to_int, "bool": _to_bool, "string": str}
BAD_VALUES = (TypeError, ValueError, OverflowError)


@dataclass(frozen=True)
class Tensor:
    """How one input or output becomes columns."""

    key: str  # its name in the logged payload
    prefix: str  # its columns' name (output.<key> for outputs)
    type: str
    role: str
    batched: bool  # its first dimension is the batch (-1)
    item_dims: tuple[int, ...]
    width: int | None  # elements per item; None: one JSON column

    @classmethod
    def of(cls, key: str, spec: dict, role: str) -> Tensor:
        shape = list(spec.get("shape") or [])
        batched = bool(shape) and shape[0] == -1
        dims = tuple(shape[1:] if batched else shape)
        width = None if -1 in dims or prod(dims) > MAX_WIDTH else prod(dims)
        prefix = key if role == "input" else f"output.{key}"
        return cls(key, prefix, _kind(spec.get("dtype")), role, batched, dims, width)

    def columns(self) -> list[Column]:
        if self.width is None:
            return [Column(self.prefix, "json", self.role)]
        if not self.item_dims:
            return [Column(self.prefix, self.type, self.role)]
        return [Column(f"{self.prefix}.{i}", self.type, self.role) for i in range(self.width)]

    def items(self, value) -> int | None:
        """How many items a logged value holds (None: it does not say)."""
        return len(value) if self.batched and isinstance(value, list) else None

    def cells(self, value, item: int, count: int) -> list:
        """The columns' values for item `item` of `count`; empty cells where the value does not fit."""
        width = 1 if self.width is None else self.width
        if value is None or (self.batched and (not isinstance(value, list) or len(value) != count)):
            return [None] * width
        part = value[item] if self.batched else value
        if self.width is None:
            return [json.dumps(part, separators=(",", ":"))]
        flat = part if len(self.item_dims) == 1 and isinstance(part, list) else _flatten(part)
        if len(flat) != self.width:
            return [None] * width
        return _cast_all(self.type, flat)


def _flatten(value) -> list:
    if not isinstance(value, list):
        return [value]
    return [leaf for part in value for leaf in _flatten(part)]


def _cast_all(kind: str, values: list) -> list:
    """The values as `kind`, at the speed of one comprehension when they all fit (the usual case)."""
    if kind != "string":
        cast = CASTS[kind]
        try:
            return [None if v is None else cast(v) for v in values]
        except BAD_VALUES:
            pass  # a nested list or a stray text among them: cast one by one below
    return [_cast(kind, v) for v in values]


def _cast(kind: str, value):
    if value is None or isinstance(value, (list, dict)):
        return None
    try:
        return CASTS[kind](value)
    except BAD_VALUES:
        return None  # a logged value the schema does not describe: left empty rather than guessed


META = [Column("prediction_id", "string", "meta"), Column("created_at", "time", "meta"),
        Column("item", "int", "meta")]  # fmt: skip
TAIL = [Column("feedback.label", "string", "feedback"), Column("feedback.correct", "bool", "feedback"),
        Column("feedback.rating", "int", "feedback"), Column("truncated", "bool", "meta")]  # fmt: skip


@dataclass(frozen=True)
class Plan:
    """A version's dataset layout: its columns, and how a logged prediction becomes rows."""

    inputs: tuple[Tensor, ...]
    outputs: tuple[Tensor, ...]

    @classmethod
    def of(cls, inputs: dict, outputs: dict) -> Plan:
        plan = cls(
            tuple(Tensor.of(k, s, "input") for k, s in (inputs or {}).items()),
            tuple(Tensor.of(k, s, "output") for k, s in (outputs or {}).items()),
        )
        names = [c.name for c in plan.columns()]
        clash = sorted({n for n in names if names.count(n) > 1})
        if clash:
            raise DatasetSchemaInvalid(
                f"The columns {', '.join(clash)} would appear twice; rename the input."
            )
        return plan

    def columns(self) -> list[Column]:
        tensors = [c for t in (*self.inputs, *self.outputs) for c in t.columns()]
        return [*META, *tensors, *TAIL]

    def rows(self, prediction: tuple, feedback: tuple | None) -> list[list]:
        """The rows of one logged prediction (id, created_at, inputs, outputs, truncated)."""
        pid, at, inputs_text, outputs_text, truncated = prediction
        inputs, outputs = _payload(inputs_text), _payload(outputs_text)
        count = self._count(inputs, outputs)
        tail = [*(feedback or (None, None, None)), bool(truncated)]
        return [[pid, at, item, *self._cells(inputs, outputs, item, count), *tail] for item in range(count)]

    def _count(self, inputs: dict, outputs: dict) -> int:
        for tensors, values in ((self.inputs, inputs), (self.outputs, outputs)):
            for tensor in tensors:
                found = tensor.items(values.get(tensor.key))
                if found:
                    return found
        return 1

    def _cells(self, inputs: dict, outputs: dict, item: int, count: int) -> list:
        cells = [c for t in self.inputs for c in t.cells(inputs.get(t.key), item, count)]
        return cells + [c for t in self.outputs for c in t.cells(outputs.get(t.key), item, count)]


def _payload(text: str | None) -> dict:
    """A logged payload as a dict; {} for none, for one the log capped, or for one that is not a dict."""
    try:
        value = orjson.loads(text) if text else {}  # a third of json's time, for every row
    except orjson.JSONDecodeError:
        value = _lenient(text)  # NaN, or an integer past 64 bits: what only the json module reads
    return {} if not isinstance(value, dict) or value.get("_truncated") is True else value


def _lenient(text: str):
    try:
        return json.loads(text)
    except ValueError:
        return {}


def predictions(
    version_id: int, since: datetime | None, labelled_only: bool, chunk: int = CHUNK
) -> Iterator[list[tuple]]:
    """The version's successful predictions in (created_at, id) order, `chunk` at a time: each query
    starts after the last row of the one before (keyset), on the (version_id, created_at) index."""
    query = Prediction.select(
        Prediction.id, Prediction.created_at, Prediction.inputs, Prediction.outputs, Prediction.truncated
    ).where(Prediction.version_id == version_id, Prediction.status == "ok", Prediction.source != "shadow")
    if since is not None:
        query = query.where(Prediction.created_at >= since)
    if labelled_only:
        labelled = Feedback.select(Feedback.id).where(
            Feedback.prediction_id == Prediction.id, Feedback.label.is_null(False)
        )
        query = query.where(fn.EXISTS(labelled))
    last = None
    while True:
        page = query
        if last is not None:
            at, pid = last
            page = page.where(
                Prediction.created_at >= at, (Prediction.created_at > at) | (Prediction.id > pid)
            )
        rows = _fetched(page.order_by(Prediction.created_at, Prediction.id).limit(chunk))
        if not rows:
            return
        yield rows
        last = rows[-1][1], rows[-1][0]


def _fetched(query) -> list[tuple]:
    """The rows of a page as plain tuples, without peewee's per-value conversion (a third of the time);
    SQLite hands times back as text and booleans as 0/1."""
    rows = database.obj.execute_sql(*query.sql()).fetchall()
    if rows and isinstance(rows[0][1], str):
        return [(pid, datetime.fromisoformat(at), i, o, bool(t)) for pid, at, i, o, t in rows]
    return rows


def feedback_of(ids: list[str]) -> dict[str, tuple]:
    """prediction id -> (label, correct, rating): per field, the latest feedback that gives it. The SQL
    is written here: peewee would spend more time quoting thousands of ids than the database answering."""
    if not ids:
        return {}
    db, table = database.obj, Feedback._meta.table_name
    sql = (
        f'SELECT "prediction_id", "label", "correct", "rating" FROM "{table}" '
        f'WHERE "prediction_id" IN ({", ".join([db.param] * len(ids))}) ORDER BY "id"'
    )
    found: dict[str, tuple] = {}
    for pid, label, correct, rating in db.execute_sql(sql, ids):
        values = (label, None if correct is None else bool(correct), rating)
        earlier = found.get(pid, (None, None, None))
        found[pid] = tuple(new if new is not None else old for new, old in zip(values, earlier, strict=True))
    return found


def dataset_rows(
    plan: Plan, version_id: int, since: datetime | None, labelled_only: bool, chunk: int = CHUNK
) -> Iterator[list[list]]:
    """The dataset's rows, a chunk of predictions at a time."""
    for page in predictions(version_id, since, labelled_only, chunk):
        feedback = feedback_of([p[0] for p in page])
        yield [row for p in page for row in plan.rows(p, feedback.get(p[0]))]


def save_snapshot(version_id: int, digest: str, **fields) -> tuple[DatasetSnapshot, bool]:
    """(the snapshot, created): an export whose file the version already has keeps the first record."""
    existing = DatasetSnapshot.get_or_none(version_id=version_id, digest=digest)
    if existing is not None:
        return existing, False
    try:
        with database.atomic():
            return DatasetSnapshot.create(version_id=version_id, digest=digest, **fields), True
    except IntegrityError:  # the same export, saved at the same moment by another request
        return DatasetSnapshot.get(version_id=version_id, digest=digest), False


def snapshots(version_ids: list[int]) -> list[DatasetSnapshot]:
    """The snapshots of these versions, newest first."""
    query = DatasetSnapshot.select().where(DatasetSnapshot.version_id.in_(version_ids))
    return list(query.order_by(DatasetSnapshot.created_at.desc(), DatasetSnapshot.id.desc()))


def find_snapshots(prefix: str) -> list[DatasetSnapshot]:
    """The snapshots whose digest starts with `prefix` (hex), oldest first."""
    query = DatasetSnapshot.select().where(DatasetSnapshot.digest.startswith(prefix))
    return list(query.order_by(DatasetSnapshot.id).limit(50))
