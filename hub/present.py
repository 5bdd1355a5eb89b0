"""Rows to the plain dicts that the API returns, the CLI prints and the pages render.

Pure: every function takes rows already loaded (the use cases in hub.py query them) and reads
nothing else. Relations a presenter follows (`version.model`, `build.version`) are joined by the
query that loaded the row.
"""

from __future__ import annotations

from urllib.parse import quote

from registry.models import BuildRow, DeploymentRow, ModelRow, VersionRow
from vocab.states import BUILD_STEPS, DeploymentStatus, StepStatus
from vocab.times import isoformat


def deployment(row: DeploymentRow | None) -> dict:
    if row is None:
        return {"status": DeploymentStatus.NOT_DEPLOYED}
    return {
        "status": row.status, "url": row.url or None, "runner": row.runner, "env_key": row.env_key or None,
        "error": row.error or None, "restarts": row.restarts, "updated_at": isoformat(row.updated_at),
    }  # fmt: skip


def version(
    row: VersionRow, aliases: dict[str, str], dep: DeploymentRow | None, detail: bool = False
) -> dict:
    """`aliases` are the model's (alias -> version number); `dep` the version's deployment."""
    m = row.manifest
    out = {
        "model": row.model.name, "version": row.version, "digest": row.digest, "size": row.size,
        "task": m["task"], "framework": m["framework"], "created_at": isoformat(row.created_at),
        "aliases": sorted(a for a, v in aliases.items() if v == row.version),
        "inputs": row.inputs, "outputs": row.outputs, "labels": m.get("labels") or [],
        "deployment": deployment(dep),
    }  # fmt: skip
    if detail:
        out |= {"manifest": m, "card": row.card, "examples": row.examples}
    return out


def version_files(row: VersionRow, entries: list) -> dict:
    """A version's files, each with the URL that sends it."""
    base = f"/api/v1/models/{row.model.name}/versions/{row.version}/files"
    return {
        "model": row.model.name, "version": row.version, "digest": row.digest, "size": row.size,
        "files": [{**e.to_dict(), "url": f"{base}/{quote(e.path)}"} for e in entries],
    }  # fmt: skip


def shown_version(aliases: dict[str, str]) -> str | None:
    """The version calls go to by default: production, else latest."""
    return aliases.get("production") or aliases.get("latest")


def model_summary(
    model: ModelRow, aliases: dict[str, str], shown: DeploymentRow | None, alerts_firing: int = 0
) -> dict:
    """The model's catalog card; `shown` is the deployment of `shown_version(aliases)`;
    `alerts_firing` counts its alert rules firing (one per rule and serving version)."""
    return {
        "name": model.name, "task": model.task, "summary": model.summary, "tags": model.tags,
        "owner": model.owner or None, "latest": aliases.get("latest"),
        "production": aliases.get("production"), "shown": shown_version(aliases),
        "deployment": deployment(shown),
        "updated_at": isoformat(model.updated_at), "alerts_firing": alerts_firing,
    }  # fmt: skip


def model(
    row: ModelRow,
    aliases: dict[str, str],
    versions: list[tuple[VersionRow, DeploymentRow | None]],
    alerts_firing: int = 0,
) -> dict:
    """The model with its versions (newest first), each with its deployment."""
    deployments = {v.version: dep for v, dep in versions}
    summary = model_summary(row, aliases, deployments.get(shown_version(aliases)), alerts_firing)
    return {**summary, "aliases": aliases, "versions": [version(v, aliases, dep) for v, dep in versions]}


def build(row: BuildRow | None, with_log: bool = False) -> dict | None:
    if row is None:
        return None
    out = {
        "id": row.id, "model": row.version.model.name, "version": row.version.version, "status": row.status,
        "created_at": isoformat(row.created_at), "started_at": isoformat(row.started_at),
        "finished_at": isoformat(row.finished_at), "seconds": row.seconds, "steps": row.steps or [],
        "progress": _progress(row), "alias": row.alias or None,
    }  # fmt: skip
    return out | {"log": row.log} if with_log else out


def _progress(row: BuildRow) -> dict:
    """How far a build got: steps done of all, and the step running now."""
    steps = row.steps or []
    done = sum(1 for s in steps if s.get("status") == StepStatus.DONE)
    running = next((s["name"] for s in steps if s.get("status") == StepStatus.RUNNING), None)
    return {"done": done, "total": len(BUILD_STEPS), "step": running}


def logs(row: VersionRow, last_build: BuildRow | None, server_log: str) -> dict:
    return {
        "model": row.model.name, "version": row.version,
        "build": build(last_build, with_log=True), "server_log": server_log,
    }  # fmt: skip


def feedback(row) -> dict:
    return {
        "id": row.id, "prediction_id": row.prediction_id, "model": row.model, "correct": row.correct,
        "label": row.label, "rating": row.rating, "comment": row.comment,
        "created_at": isoformat(row.created_at),
    }  # fmt: skip


def leaderboard_row(row: VersionRow, card: dict, dep: DeploymentRow | None, drift=None) -> dict:
    """`drift` is the version's latest finished drift run (None before the first)."""
    fb, lat = card["feedback"], card["latency_ms"]
    return {
        "model": row.model.name, "version": row.version, "requests": card["requests"],
        "error_rate": card["error_rate"], "p95_ms": lat["p95"], "feedback": fb["count"],
        "accuracy": fb["accuracy"], "accuracy_low": fb["accuracy_low"], "accuracy_high": fb["accuracy_high"],
        "drift_share": drift.share if drift is not None else None,
        "mean_rating": fb["mean_rating"], "deployment": deployment(dep)["status"],
    }  # fmt: skip


def leaderboard_key(row: dict) -> tuple:
    """Ranked by accuracy's lower bound (more evidence ranks higher), then lower p95 latency."""
    low = row["accuracy_low"]
    p95 = row["p95_ms"]
    return (low is None, -(low or 0.0), p95 is None, p95 or 0.0, row["model"], row["version"])


def model_metadata(row: VersionRow, versions: list[str], ready: bool) -> dict:
    """What a protocol needs to describe a model: its schema, versions and readiness."""
    return {
        "name": row.model.name, "version": row.version, "versions": versions,
        "framework": row.manifest["framework"], "inputs": row.inputs, "outputs": row.outputs,
        "ready": ready,
    }  # fmt: skip


def drift_summary(run, result: dict | None) -> dict:
    """What a scorecard shows of the latest drift run: the share and each input column's verdict."""
    columns = (result or {}).get("inputs", {}).get("columns", [])
    return {
        "share": run.share, "drifted": run.drifted, "at": isoformat(run.created_at), "run": run.id,
        "reference": run.reference,
        "columns": {c["column"]: c["drifted"] for c in columns},
    }  # fmt: skip


def drift_run(version: VersionRow, run, result: dict | None) -> dict:
    result = result or {}
    return {
        "id": run.id, "model": version.model.name, "version": version.version,
        "at": isoformat(run.created_at), "status": run.status, "error": run.error,
        "window": {"start": isoformat(run.window_start), "end": isoformat(run.window_end)},
        "reference": run.reference, "share": run.share, "drifted": run.drifted,
        "inputs": result.get("inputs"), "outputs": result.get("outputs"), "report": bool(run.report),
    }  # fmt: skip


def lineage(row: VersionRow, children: list[str], snapshots: dict) -> dict:
    """A version's lineage: its `parent` and `children` (version numbers of its model) and the dataset
    snapshots it was `trained_on`; `snapshots` maps a hex digest to (its row, the version it was taken
    from), and a digest the hub no longer holds is shown with null figures."""
    m = row.manifest
    digests = m.get("trained_on") or []
    trained_on = [
        lineage_snapshot(d, *snapshots.get(str(d).removeprefix("sha256:"), (None, None))) for d in digests
    ]
    return {"version": row.version, "parent": m.get("parent"), "children": children, "trained_on": trained_on}


def lineage_snapshot(digest: str, row, source: VersionRow | None) -> dict:
    """One `trained_on` snapshot: its figures and where to download it (null when it is gone)."""
    if row is None:
        return {"digest": digest, "model": None, "version": None, "format": None, "rows": None,
                "labels": None, "created_at": None, "url": None}  # fmt: skip
    return {
        "digest": digest, "model": source.model.name if source else None,
        "version": source.version if source else None, "format": row.format, "rows": row.rows,
        "labels": row.labels, "created_at": isoformat(row.created_at), "url": f"/api/v1/datasets/{digest}",
    }  # fmt: skip


def lineage_numbers(card: dict) -> dict:
    """What the lineage shows of a version's scorecard: accuracy with its 95% interval, requests,
    error rate and p95 latency."""
    fb = card["feedback"]
    return {
        "requests": card["requests"], "error_rate": card["error_rate"], "p95_ms": card["latency_ms"]["p95"],
        "feedback": fb["count"], "accuracy": fb["accuracy"], "accuracy_low": fb["accuracy_low"],
        "accuracy_high": fb["accuracy_high"],
    }  # fmt: skip
