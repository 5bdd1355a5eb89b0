"""Drift runs: the logged payloads a run compares, and the runs stored per version.

A payload is what the prediction log kept of one successful call: its inputs and outputs, as stored
(JSON text, `first_calls`, `recent_calls`: a drift run hands them to its worker unparsed) or parsed
back (`first_payloads`); calls whose payload was over the log's size cap are left out (only a marker
was kept).
The computation itself (Evidently) is `monitor.drift`, run in a child process.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from datetime import datetime

from peewee import fn

from monitor.tables import DriftRun, Prediction, Rollup
from vocab.states import DriftRunStatus
from vocab.times import minute_of, utcnow


@dataclass(frozen=True)
class Payloads:
    inputs: list[dict]
    outputs: list[dict]
    last_id: str | None  # the newest prediction id among them


Call = tuple[str, str, str | None]  # (prediction id, inputs JSON, outputs JSON or None), as stored


def _successful(version_id: int):
    return Prediction.select(Prediction.id, Prediction.inputs, Prediction.outputs).where(
        Prediction.version_id == version_id,
        Prediction.status == "ok",
        Prediction.truncated == False,  # noqa: E712 - peewee builds SQL from the comparison
        Prediction.inputs.is_null(False),
    )


def first_calls(version_id: int, count: int) -> list[Call]:
    """The version's first `count` logged calls, their payloads as stored (not parsed)."""
    return list(_successful(version_id).order_by(Prediction.id).limit(count).tuples())


def recent_calls(version_id: int, since: datetime, until: datetime, limit: int, after: str | None = None
                 ) -> list[Call]:  # fmt: skip
    """The newest `limit` calls in [since, until), newer than prediction id `after` when given, oldest
    first, their payloads as stored (not parsed)."""
    query = _successful(version_id).where(Prediction.created_at >= since, Prediction.created_at < until)
    if after:
        query = query.where(Prediction.id > after)
    return list(query.order_by(Prediction.id.desc()).limit(limit).tuples())[::-1]


def first_payloads(version_id: int, count: int) -> Payloads:
    """The version's first `count` logged calls: the reference when its package has none."""
    return _parsed(first_calls(version_id, count))


def _parsed(calls: list[Call]) -> Payloads:
    """The calls' payloads; a call whose stored JSON does not parse (a model server's record) is left out."""
    inputs, outputs = [], []
    for _, inputs_text, outputs_text in calls:
        try:
            pair = json.loads(inputs_text), json.loads(outputs_text) if outputs_text else {}
        except ValueError:
            continue
        inputs.append(pair[0])
        outputs.append(pair[1])
    return Payloads(inputs, outputs, calls[-1][0] if calls else None)


def record_run(version_id: int, window: tuple[datetime, datetime], reference: str, **fields) -> DriftRun:
    """Store one run: `fields` are status, error, share, drifted, result (a dict), report (a digest)."""
    result = fields.pop("result", None)
    return DriftRun.create(
        version_id=version_id, created_at=utcnow(), window_start=window[0], window_end=window[1],
        reference=reference, result=json.dumps(result) if result is not None else None, **fields,
    )  # fmt: skip


def latest_run(version_id: int, done_only: bool = False) -> DriftRun | None:
    query = DriftRun.select().where(DriftRun.version_id == version_id)
    if done_only:
        query = query.where(DriftRun.status == DriftRunStatus.DONE)
    return query.order_by(DriftRun.id.desc()).first()


def runs(version_id: int, limit: int = 20) -> list[DriftRun]:
    """The version's runs, newest first."""
    return list(
        DriftRun.select().where(DriftRun.version_id == version_id).order_by(DriftRun.id.desc()).limit(limit)
    )


def run_by_id(version_id: int, run_id: int) -> DriftRun | None:
    return DriftRun.get_or_none(DriftRun.id == run_id, DriftRun.version_id == version_id)


def result_of(run: DriftRun) -> dict | None:
    return json.loads(run.result) if run.result else None


def calls_since(version_id: int, since: datetime) -> int:
    """Calls to the version counted in the rollups from `since`'s minute on (no scan of the log)."""
    total = (
        Rollup.select(fn.COALESCE(fn.SUM(Rollup.requests), 0))
        .where(Rollup.version_id == version_id, Rollup.minute >= minute_of(since))
        .scalar()
    )
    return int(total or 0)
