"""Deploying versions onto a runner through the build queue, and keeping the table true to what runs.

A build is a row (`builds`) and a queued task. Its steps (queued, environment, start, smoke test) are
timed and saved as they go, with the log, so `aid logs --follow` and the build page show progress
while it runs. Cancelling marks the row; the worker notices at the next log line or step.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from pathlib import Path

from peewee import fn

from database.connection import database
from hub.buildlog import BuildCancelled, BuildLog, end_interrupted
from hub.buildqueue import BuildQueue
from hub.errors import Conflict, NotFound, Unavailable, translated
from registry.models import BuildRow, DeploymentRow, ModelRow, VersionRow
from runners.base import Instance, Runner, server_key
from vocab.names import semver_key
from vocab.states import IN_FLIGHT, LIVE, SERVING, BuildStatus, BuildStep
from vocab.states import DeploymentStatus as Status
from vocab.times import utcnow

log = logging.getLogger(__name__)
LOG_TAIL_BYTES = 64 * 1024


def instance_of(row: DeploymentRow) -> Instance:
    return Instance(
        key=server_key(row.version.model.name, row.version.version), url=row.url, env_key=row.env_key,
        pid=row.pid, port=row.port, log_path=Path(row.log_path) if row.log_path else None,
        runner=row.runner, container_id=row.container_id or None,
    )  # fmt: skip


class Deployments:
    def __init__(self, runner: Runner, spec_of, smoke_test, huey):
        self.runner = runner
        self.spec_of = spec_of  # VersionRow -> ServeSpec
        self.smoke_test = smoke_test  # (VersionRow, url, log) -> None; raises when an example fails
        self.queue = BuildQueue(huey, self.run)
        self.on_change = lambda: None  # called after a deployment's state changed
        self.on_ready: Callable[[BuildRow], None] = lambda build: None  # inside the ready transaction
        self.on_finished: Callable[[BuildRow, str, float], None] = lambda build, status, seconds: None

    def deploy(self, version: VersionRow, alias: str = "", retire: int | None = None) -> BuildRow:
        """Start (or keep) the version's server; the build runs on the queue.

        With `alias`, the alias moves to the version when its build succeeds (and not before);
        `retire` names the version (id) to stop after that."""
        current = DeploymentRow.get_or_none(version=version)
        in_flight = self.latest_build(version)
        if in_flight and in_flight.status in IN_FLIGHT:
            if alias:
                BuildRow.update(alias=alias, retire=retire).where(BuildRow.id == in_flight.id).execute()
            return in_flight
        with translated():  # the container engine may be away
            if current and current.status in SERVING and self.alive(current):
                return in_flight
        with database.atomic():
            build = BuildRow.create(version=version, status=BuildStatus.QUEUED, alias=alias, retire=retire)
            DeploymentRow.insert(
                version=version, status=Status.STARTING, runner=self.runner.kind
            ).on_conflict(
                conflict_target=[DeploymentRow.version],
                update={
                    DeploymentRow.status: Status.STARTING,
                    DeploymentRow.error: "",
                    DeploymentRow.updated_at: utcnow(),
                },
            ).execute()
        self.queue.submit(build.id)
        return build

    def latest_build(self, version: VersionRow) -> BuildRow | None:
        return _builds().where(BuildRow.version == version).order_by(BuildRow.id.desc()).first()

    def build(self, build_id: int) -> BuildRow:
        row = _builds().where(BuildRow.id == build_id).first()
        if row is None:
            raise NotFound(f"Build {build_id} does not exist. 'aid show MODEL' lists a version's builds.")
        return row

    # --- reading ------------------------------------------------------------------------

    def row(self, version: VersionRow) -> DeploymentRow | None:
        return DeploymentRow.get_or_none(DeploymentRow.version == version)

    def rows(self, versions: list[VersionRow]) -> dict[int, DeploymentRow]:
        """The deployments of `versions` by version id, in one query."""
        ids = [v.id for v in versions]
        query = DeploymentRow.select().where(DeploymentRow.version.in_(ids)) if ids else []
        return {row.version_id: row for row in query}

    def serves(self, version: VersionRow) -> bool:
        row = self.row(version)
        return row is not None and row.status == Status.READY

    def newest_ready(self, model: ModelRow) -> VersionRow | None:
        query = VersionRow.select(VersionRow, ModelRow).join(ModelRow).switch(VersionRow).join(DeploymentRow)
        ready = query.where(VersionRow.model == model, DeploymentRow.status == Status.READY)
        return max(ready, key=lambda v: semver_key(v.version), default=None)

    def counts(self) -> dict[str, int]:
        query = DeploymentRow.select(DeploymentRow.status, fn.COUNT(DeploymentRow.id).alias("n"))
        return {r.status: r.n for r in query.group_by(DeploymentRow.status)}

    def server_log(self, version: VersionRow) -> str:
        """The end of the version's server log ('' when it has none)."""
        row = self.row(version)
        path = Path(row.log_path) if row and row.log_path else None
        if path is None or not path.is_file():
            return ""
        with open(path, "rb") as f:
            f.seek(max(0, path.stat().st_size - LOG_TAIL_BYTES))
            return f.read().decode(errors="replace")

    # --- building -----------------------------------------------------------------------

    def run(self, build_id: int) -> None:
        """The queue's task: build, start and smoke-test one version; the outcome goes to the rows."""
        claimed = (
            BuildRow.update(status=BuildStatus.RUNNING, started_at=utcnow())
            .where(BuildRow.id == build_id, BuildRow.status == BuildStatus.QUEUED)
            .execute()
        )
        if not claimed:  # cancelled while queued, or another worker has it
            return
        build = BuildRow.get_by_id(build_id)
        out = BuildLog(build_id)
        out.done(BuildStep.QUEUED, (build.started_at - build.created_at).total_seconds())
        started, instance = time.monotonic(), None
        try:
            spec = self.spec_of(build.version)
            with out.step(BuildStep.ENVIRONMENT):
                self.runner.build(spec, out)
            with out.step(BuildStep.START):
                instance = self.runner.start(spec, out)
            with out.step(BuildStep.SMOKE_TEST):
                self.smoke_test(build.version, instance.url, out)
        except Exception as e:  # a failed build is recorded, never raised into the queue
            if instance is not None:
                self.runner.stop(instance)
            outcome = BuildStatus.CANCELLED if isinstance(e, BuildCancelled) else BuildStatus.FAILED
            self._ended(build, out, e, outcome, time.monotonic() - started)
            return
        self._ready(build, out, instance, time.monotonic() - started)

    def _ready(self, build: BuildRow, out: BuildLog, instance: Instance, seconds: float) -> None:
        out(f"ready at {instance.url} in {seconds:.1f}s")
        out.save()
        with database.atomic():
            DeploymentRow.update(
                status=Status.READY, url=instance.url, pid=instance.pid, port=instance.port,
                container_id=instance.container_id or "",
                env_key=instance.env_key, log_path=str(instance.log_path or ""),
                runner=self.runner.kind, error="", updated_at=utcnow(),
            ).where(DeploymentRow.version == build.version).execute()  # fmt: skip
            self._finish(build, BuildStatus.SUCCEEDED, seconds)
            self.on_ready(BuildRow.get_by_id(build.id))
        self.on_change()

    def _ended(self, build: BuildRow, out: BuildLog, error: Exception, outcome: str, seconds: float) -> None:
        tail = getattr(error, "log_tail", "") or out.tail()
        out(f"{outcome}: {error}")
        out.save()
        name = f"{build.version.model.name}@{build.version.version}"
        log.warning("deploy of %s %s: %s", name, outcome, error)
        cancelled = outcome == BuildStatus.CANCELLED
        status, detail = (Status.STOPPED, "") if cancelled else (Status.FAILED, f"{error}\n{tail}".strip())
        with database.atomic():
            DeploymentRow.update(status=status, error=detail, updated_at=utcnow()).where(
                DeploymentRow.version == build.version
            ).execute()
            self._finish(build, outcome, seconds)
        self.on_change()

    def _finish(self, build: BuildRow, status: str, seconds: float) -> None:
        BuildRow.update(status=status, finished_at=utcnow(), seconds=round(seconds, 2)).where(
            BuildRow.id == build.id
        ).execute()
        self.on_finished(build, status, seconds)

    def cancel(self, build_id: int) -> BuildRow:
        """A queued build ends at once; a running one at its next log line or step."""
        build = BuildRow.get_or_none(BuildRow.id == build_id)
        if build is None:
            return None
        if build.status in (BuildStatus.RUNNING, BuildStatus.CANCELLING):
            BuildRow.update(status=BuildStatus.CANCELLING).where(
                BuildRow.id == build_id, BuildRow.status == BuildStatus.RUNNING
            ).execute()
        elif build.status == BuildStatus.QUEUED:
            with database.atomic():
                claimed = (
                    BuildRow.update(status=BuildStatus.CANCELLED, finished_at=utcnow(), seconds=0.0)
                    .where(BuildRow.id == build_id, BuildRow.status == BuildStatus.QUEUED)
                    .execute()
                )
                if claimed:
                    DeploymentRow.update(status=Status.STOPPED, updated_at=utcnow()).where(
                        DeploymentRow.version == build.version, DeploymentRow.status == Status.STARTING
                    ).execute()
            if not claimed:  # a worker took it meanwhile
                return self.cancel(build_id)
        else:
            raise Conflict(f"Build {build_id} already {build.status}; there is nothing to cancel.")
        return BuildRow.get_by_id(build_id)

    def undeploy(self, version: VersionRow) -> DeploymentRow | None:
        row = DeploymentRow.get_or_none(version=version)
        if row is None:
            return None
        in_flight = self.latest_build(version)
        if in_flight and in_flight.status in IN_FLIGHT:
            self.cancel(in_flight.id)
        DeploymentRow.update(status=Status.STOPPING, updated_at=utcnow()).where(
            DeploymentRow.id == row.id
        ).execute()
        if row.pid or row.url:
            try:
                with translated():
                    self.runner.stop(instance_of(row))
            except Unavailable:  # the container engine is away: the server runs on, as it was
                DeploymentRow.update(status=row.status).where(
                    DeploymentRow.id == row.id, DeploymentRow.status == Status.STOPPING
                ).execute()
                raise
        DeploymentRow.update(status=Status.STOPPED, pid=None, container_id="", updated_at=utcnow()).where(
            DeploymentRow.id == row.id
        ).execute()
        self.on_change()
        return DeploymentRow.get_by_id(row.id)

    def endpoint(self, version: VersionRow) -> str:
        row = DeploymentRow.get_or_none(version=version)
        name = f"{version.model.name}@{version.version}"
        if row is None or row.status == Status.STOPPED:
            raise Unavailable(f"{name} is not deployed. Run 'aid deploy {name}' first.")
        if row.status != Status.READY:
            detail = f": {row.error.splitlines()[0]}" if row.error else ""
            raise Unavailable(f"{name} is {row.status}{detail}. See 'aid logs {name}'.")
        return row.url

    def alive(self, row: DeploymentRow) -> bool:
        return bool(row.pid or row.container_id) and self.runner.alive(instance_of(row))

    def mark_unhealthy(self, row: DeploymentRow, why: str) -> bool:
        """Record that a deployed server is down; False when the row changed meanwhile (undeploy)."""
        changed = (
            DeploymentRow.update(status=Status.UNHEALTHY, error=why, updated_at=utcnow())
            .where(
                DeploymentRow.id == row.id,
                DeploymentRow.status.in_(SERVING),
                DeploymentRow.url == row.url,
            )
            .execute()
        )
        self.on_change()
        return bool(changed)

    def note(self, row: DeploymentRow, text: str) -> None:
        """Set what a ready deployment's `error` says while it serves on (the watcher's note that the
        container engine is away), or clear it with ''; its status stays."""
        if (row.error or "") != text:
            DeploymentRow.update(error=text).where(
                DeploymentRow.id == row.id, DeploymentRow.status == Status.READY, DeploymentRow.url == row.url
            ).execute()

    def restart(self, row: DeploymentRow) -> Instance:
        """Start an unhealthy deployment's server again from its built environment."""
        name = f"{row.version.model.name}@{row.version.version}"
        self.runner.stop(instance_of(row))  # what is left of it: a dead container, orphaned workers
        instance = self.runner.start(self.spec_of(row.version), lambda line: log.info("%s: %s", name, line))
        with database.atomic():
            moved = (
                DeploymentRow.update(
                    status=Status.READY, url=instance.url, pid=instance.pid, port=instance.port,
                    container_id=instance.container_id or "", log_path=str(instance.log_path or ""),
                    error="", restarts=DeploymentRow.restarts + 1, updated_at=utcnow(),
                )
                .where(DeploymentRow.id == row.id, DeploymentRow.status == Status.UNHEALTHY)
                .execute()
            )  # fmt: skip
        if not moved:  # undeployed while it started
            self.runner.stop(instance)
        self.on_change()
        return instance

    def reconcile(self, sole_worker: bool = True) -> None:
        """On hub start: adopt servers that still run, restart those that should, remove orphans.
        `sole_worker`: no other process builds (the embedded queue), so a build still running was cut
        short; it is built again."""
        if sole_worker:
            self._rebuild_interrupted()
        keep = set()
        for row in DeploymentRow.select().where(DeploymentRow.status.in_(LIVE)):
            if row.status in SERVING and self.alive(row):
                log.info("adopted %s@%s at %s", row.version.model.name, row.version.version, row.url)
                keep.add(row.container_id or row.pid)
                continue
            latest = self.latest_build(row.version)
            if latest and latest.status in IN_FLIGHT:
                continue  # still on the queue, or a worker elsewhere builds it
            DeploymentRow.update(status=Status.STOPPED).where(DeploymentRow.id == row.id).execute()
            self.deploy(row.version)
        for instance in self.runner.instances():
            if (instance.container_id or instance.pid) not in keep:
                log.info(
                    "removing orphan server %s (%s)", instance.key, instance.container_id or instance.pid
                )
                self.runner.stop(instance)

    def _rebuild_interrupted(self) -> None:
        for build, status in end_interrupted():
            name = f"{build.version.model.name}@{build.version.version}"
            log.warning("build %d of %s was cut short when the hub stopped; it is %s", build.id, name, status)
            if status == BuildStatus.FAILED:
                self.deploy(build.version, build.alias, build.retire)
            else:
                DeploymentRow.update(status=Status.STOPPED, updated_at=utcnow()).where(
                    DeploymentRow.version == build.version, DeploymentRow.status == Status.STARTING
                ).execute()

    def wait(self, build_id: int, timeout: float = 300.0) -> BuildRow:
        """Block until the build ended (tests and `aid worker --once` use it)."""
        deadline = time.monotonic() + timeout
        while True:
            build = BuildRow.get_by_id(build_id)
            if build.status not in IN_FLIGHT:
                return build
            if time.monotonic() > deadline:
                raise TimeoutError(f"Build {build_id} is still {build.status} after {timeout:.0f} s.")
            time.sleep(0.1)

    def close(self) -> None:
        self.queue.stop()


def _builds():
    """Builds with their version and model loaded (presenters follow both)."""
    return BuildRow.select(BuildRow, VersionRow, ModelRow).join(VersionRow).join(ModelRow)
