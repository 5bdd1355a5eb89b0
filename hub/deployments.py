"""Deploying versions onto a runner in the background, and keeping the table true to what runs."""

from __future__ import annotations

import logging
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

from hub.errors import Unavailable
from registry.db import database
from registry.models import BuildRow, DeploymentRow, VersionRow, utcnow
from runners.base import Instance, Runner

log = logging.getLogger(__name__)
LIVE = ("starting", "ready")
TAIL_LINES = 40


class BuildLog:
    """Collects a build's lines and saves them to its row at most once a second."""

    def __init__(self, build_id: int):
        self.build_id = build_id
        self.lines: list[str] = []
        self.saved_at = 0.0
        self.lock = threading.Lock()

    def __call__(self, line: str) -> None:
        with self.lock:
            self.lines.append(line.rstrip("\n"))
            if time.monotonic() - self.saved_at > 1.0:
                self.save()

    def save(self) -> None:
        self.saved_at = time.monotonic()
        BuildRow.update(log="\n".join(self.lines) + "\n").where(BuildRow.id == self.build_id).execute()

    def tail(self, n: int = TAIL_LINES) -> str:
        return "\n".join(self.lines[-n:])


def instance_of(row: DeploymentRow) -> Instance:
    return Instance(
        key=row.version.model.name + "@" + row.version.version, url=row.url, env_key=row.env_key,
        pid=row.pid, port=row.port, log_path=Path(row.log_path) if row.log_path else None,
        runner=row.runner, container_id=row.container_id or None,
    )  # fmt: skip


class Deployments:
    def __init__(self, runner: Runner, spec_of, smoke_test, workers: int = 2):
        self.runner = runner
        self.spec_of = spec_of  # VersionRow -> ServeSpec
        self.smoke_test = smoke_test  # (VersionRow, url, log) -> None; raises when an example fails
        self.pool = ThreadPoolExecutor(max_workers=workers, thread_name_prefix="deploy")
        self.futures: dict[int, object] = {}
        self.on_change = lambda: None  # called after a deployment's state changed

    def deploy(self, version: VersionRow) -> BuildRow:
        """Start (or keep) the version's server; the build runs in the background."""
        current = DeploymentRow.get_or_none(version=version)
        if current and current.status in LIVE and self._alive(current):
            return self.latest_build(version)
        with database.atomic():
            build = BuildRow.create(version=version, status="queued")
            DeploymentRow.insert(version=version, status="starting", runner=self.runner.kind).on_conflict(
                conflict_target=[DeploymentRow.version],
                update={
                    DeploymentRow.status: "starting",
                    DeploymentRow.error: "",
                    DeploymentRow.updated_at: utcnow(),
                },
            ).execute()
        self.futures[build.id] = self.pool.submit(self._run, build.id)
        return build

    def latest_build(self, version: VersionRow) -> BuildRow | None:
        return BuildRow.select().where(BuildRow.version == version).order_by(BuildRow.id.desc()).first()

    def _run(self, build_id: int) -> None:
        build = BuildRow.get_by_id(build_id)
        started = time.monotonic()
        BuildRow.update(status="running", started_at=utcnow()).where(BuildRow.id == build_id).execute()
        out = BuildLog(build_id)
        instance = None
        try:
            instance = self.runner.start(self.spec_of(build.version), out)
            self.smoke_test(build.version, instance.url, out)
        except Exception as e:  # a failed build is recorded, never raised into the pool
            if instance is not None:
                self.runner.stop(instance)
            self._failed(build, out, e, time.monotonic() - started)
            return
        self._ready(build, out, instance, time.monotonic() - started)

    def _ready(self, build: BuildRow, out: BuildLog, instance: Instance, seconds: float) -> None:
        out(f"ready at {instance.url} in {seconds:.1f}s")
        out.save()
        with database.atomic():
            DeploymentRow.update(
                status="ready", url=instance.url, pid=instance.pid, port=instance.port,
                container_id=instance.container_id or "",
                env_key=instance.env_key, log_path=str(instance.log_path or ""),
                runner=self.runner.kind, error="", updated_at=utcnow(),
            ).where(DeploymentRow.version == build.version).execute()  # fmt: skip
            self._finish(build, "succeeded", seconds)
        self.on_change()

    def _failed(self, build: BuildRow, out: BuildLog, error: Exception, seconds: float) -> None:
        tail = getattr(error, "log_tail", "") or out.tail()
        out(f"failed: {error}")
        out.save()
        log.warning("deploy of %s@%s failed: %s", build.version.model.name, build.version.version, error)
        with database.atomic():
            DeploymentRow.update(
                status="failed", error=f"{error}\n{tail}".strip(), updated_at=utcnow()
            ).where(DeploymentRow.version == build.version).execute()
            self._finish(build, "failed", seconds)
        self.on_change()

    def _finish(self, build: BuildRow, status: str, seconds: float) -> None:
        BuildRow.update(status=status, finished_at=utcnow(), seconds=round(seconds, 2)).where(
            BuildRow.id == build.id
        ).execute()

    def undeploy(self, version: VersionRow) -> DeploymentRow | None:
        row = DeploymentRow.get_or_none(version=version)
        if row is None:
            return None
        if row.pid or row.url:
            self.runner.stop(instance_of(row))
        DeploymentRow.update(status="stopped", pid=None, container_id="", updated_at=utcnow()).where(
            DeploymentRow.id == row.id
        ).execute()
        self.on_change()
        return DeploymentRow.get_by_id(row.id)

    def endpoint(self, version: VersionRow) -> str:
        row = DeploymentRow.get_or_none(version=version)
        name = f"{version.model.name}@{version.version}"
        if row is None or row.status in ("stopped",):
            raise Unavailable(f"{name} is not deployed. Run 'aid deploy {name}' first.")
        if row.status != "ready":
            detail = f": {row.error.splitlines()[0]}" if row.error else ""
            raise Unavailable(f"{name} is {row.status}{detail}. See 'aid logs {name}'.")
        return row.url

    def _alive(self, row: DeploymentRow) -> bool:
        return bool(row.pid or row.container_id) and self.runner.alive(instance_of(row))

    def reconcile(self) -> None:
        """On hub start: keep servers that still run, restart those that should but do not."""
        for row in DeploymentRow.select().where(DeploymentRow.status.in_(LIVE)):
            if row.status == "ready" and self._alive(row):
                log.info("adopted %s@%s at %s", row.version.model.name, row.version.version, row.url)
                continue
            DeploymentRow.update(status="stopped").where(DeploymentRow.id == row.id).execute()
            self.deploy(row.version)

    def wait(self, build_id: int, timeout: float | None = None) -> None:
        future = self.futures.get(build_id)
        if future is not None:
            future.result(timeout=timeout)

    def close(self) -> None:
        self.pool.shutdown(wait=False, cancel_futures=True)
