"""The Hub's use case for a version's build history: its recent builds, the latest with its log's tail."""

from __future__ import annotations

from hub import present
from registry.models import BuildRow, ModelRow, VersionRow

HISTORY = 10  # builds the model page lists
LOG_TAIL_LINES = 80  # of the latest build's log, shown inline
LOG_TAIL_CHARS = 16_000


def log_tail(log: str) -> str:
    """The end of a build log: its last LOG_TAIL_LINES lines, at most LOG_TAIL_CHARS characters."""
    return "\n".join(log.splitlines()[-LOG_TAIL_LINES:])[-LOG_TAIL_CHARS:]


class BuildHistoryUseCases:
    """Mixed into Hub: uses its catalog and deployments."""

    def builds(self, name: str, ref: str | None = None, limit: int = HISTORY) -> dict:
        """NAME[@REF]'s newest builds, newest first (without their logs), and the latest build with
        the tail of its log (`log_tail`) and whether it was cut (`log_cut`); None when none ran."""
        version = self.catalog.resolve(name, ref)
        listed = [f for f in BuildRow._meta.sorted_fields if f is not BuildRow.log]
        rows = (
            BuildRow.select(*listed, VersionRow, ModelRow)
            .join(VersionRow)
            .join(ModelRow)
            .where(BuildRow.version == version)
            .order_by(BuildRow.id.desc())
            .limit(limit)
        )
        builds = [present.build(row) for row in rows]
        if not builds:
            return {"builds": [], "latest": None}
        latest = present.build(self.deployments.build(builds[0]["id"]), with_log=True)
        log = latest.pop("log") or ""
        tail = log_tail(log)
        return {"builds": builds, "latest": {**latest, "log_tail": tail, "log_cut": len(tail) < len(log)}}
