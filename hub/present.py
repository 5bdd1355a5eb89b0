"""Rows to the plain dicts that the API returns, the CLI prints and the pages render."""

from __future__ import annotations

from pathlib import Path

from peewee import fn

from hub.catalog import semver_key
from hub.errors import NotFound
from registry.models import AliasRow, BuildRow, DeploymentRow, ModelRow, VersionRow

LOG_TAIL_BYTES = 64 * 1024


def _time(value) -> str | None:
    return value.isoformat(timespec="seconds") + "Z" if value else None


def _aliases(model: ModelRow) -> dict[str, str]:
    rows = AliasRow.select(AliasRow, VersionRow).join(VersionRow).where(AliasRow.model == model)
    return {a.name: a.version.version for a in sorted(rows, key=lambda a: a.name)}


def deployment(version: VersionRow) -> dict:
    row = DeploymentRow.get_or_none(version=version)
    if row is None:
        return {"status": "not deployed"}
    return {
        "status": row.status, "url": row.url or None, "runner": row.runner, "env_key": row.env_key or None,
        "error": row.error or None, "restarts": row.restarts, "updated_at": _time(row.updated_at),
    }  # fmt: skip


def version(row: VersionRow, detail: bool = False) -> dict:
    m = row.manifest
    out = {
        "model": row.model.name, "version": row.version, "digest": row.digest, "size": row.size,
        "task": m["task"], "framework": m["framework"], "created_at": _time(row.created_at),
        "aliases": sorted(a for a, v in _aliases(row.model).items() if v == row.version),
        "inputs": row.inputs, "outputs": row.outputs, "labels": m.get("labels") or [],
        "deployment": deployment(row),
    }  # fmt: skip
    if detail:
        out |= {"manifest": m, "card": row.card, "examples": row.examples}
    return out


def model_summary(model: ModelRow) -> dict:
    """The model's catalog card; `shown` is the version calls go to by default (production, else latest)."""
    aliases = _aliases(model)
    shown = aliases.get("production") or aliases.get("latest")
    row = VersionRow.get_or_none(model=model, version=shown) if shown else None
    return {
        "name": model.name, "task": model.task, "summary": model.summary, "tags": model.tags,
        "latest": aliases.get("latest"), "production": aliases.get("production"), "shown": shown,
        "deployment": deployment(row) if row else {"status": "not deployed"},
        "updated_at": _time(model.updated_at),
    }  # fmt: skip


def model(row: ModelRow) -> dict:
    versions = sorted(row.versions, key=lambda v: semver_key(v.version), reverse=True)
    return {**model_summary(row), "aliases": _aliases(row), "versions": [version(v) for v in versions]}


def newest_ready(model: ModelRow) -> VersionRow | None:
    ready = (
        VersionRow.select()
        .join(DeploymentRow)
        .where(VersionRow.model == model, DeploymentRow.status == "ready")
    )
    return max(ready, key=lambda v: semver_key(v.version), default=None)


def get_build(build_id: int) -> BuildRow:
    row = BuildRow.get_or_none(BuildRow.id == build_id)
    if row is None:
        raise NotFound(f"Build {build_id} does not exist. 'aid show MODEL' lists a version's builds.")
    return row


def build(row: BuildRow | None, with_log: bool = False) -> dict | None:
    if row is None:
        return None
    out = {
        "id": row.id, "model": row.version.model.name, "version": row.version.version, "status": row.status,
        "created_at": _time(row.created_at), "started_at": _time(row.started_at),
        "finished_at": _time(row.finished_at), "seconds": row.seconds, "steps": row.steps or [],
        "progress": _progress(row), "alias": row.alias or None,
    }  # fmt: skip
    return out | {"log": row.log} if with_log else out


BUILD_STEPS = ("queued", "environment", "start", "smoke test")


def _progress(row: BuildRow) -> dict:
    """How far a build got: steps done of all, and the step running now."""
    steps = row.steps or []
    done = sum(1 for s in steps if s.get("status") == "done")
    running = next((s["name"] for s in steps if s.get("status") == "running"), None)
    return {"done": done, "total": len(BUILD_STEPS), "step": running}


def _tail(path: str) -> str:
    if not path or not Path(path).is_file():
        return ""
    with open(path, "rb") as f:
        f.seek(max(0, Path(path).stat().st_size - LOG_TAIL_BYTES))
        return f.read().decode(errors="replace")


def logs(row: VersionRow, last_build: BuildRow | None) -> dict:
    dep = DeploymentRow.get_or_none(version=row)
    return {
        "model": row.model.name, "version": row.version,
        "build": build(last_build, with_log=True), "server_log": _tail(dep.log_path if dep else ""),
    }  # fmt: skip


def deployment_counts() -> dict[str, int]:
    query = DeploymentRow.select(DeploymentRow.status, fn.COUNT(DeploymentRow.id).alias("n"))
    return {r.status: r.n for r in query.group_by(DeploymentRow.status)}


def feedback(row) -> dict:
    return {
        "id": row.id, "prediction_id": row.prediction_id, "model": row.model, "correct": row.correct,
        "label": row.label, "rating": row.rating, "comment": row.comment, "created_at": _time(row.created_at),
    }  # fmt: skip


def leaderboard_row(row: VersionRow, card: dict) -> dict:
    fb, lat = card["feedback"], card["latency_ms"]
    return {
        "model": row.model.name, "version": row.version, "requests": card["requests"],
        "error_rate": card["error_rate"], "p95_ms": lat["p95"], "feedback": fb["count"],
        "accuracy": fb["accuracy"], "accuracy_low": fb["accuracy_low"], "accuracy_high": fb["accuracy_high"],
        "mean_rating": fb["mean_rating"], "deployment": deployment(row)["status"],
    }  # fmt: skip


def leaderboard_key(row: dict) -> tuple:
    """Ranked by accuracy's lower bound (more evidence ranks higher), then lower p95 latency."""
    low = row["accuracy_low"]
    p95 = row["p95_ms"]
    return (low is None, -(low or 0.0), p95 is None, p95 or 0.0, row["model"], row["version"])
