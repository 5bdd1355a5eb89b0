"""A build's log and timed steps, saved to its row as they go so that progress shows while it runs;
cancelling is noticed at the next log line or step."""

from __future__ import annotations

import contextlib
import threading
import time
from collections.abc import Iterator

from registry.models import BuildRow
from vocab.states import BuildStatus, StepStatus
from vocab.times import utcnow

TAIL_LINES = 40
SAVE_EVERY_S = 0.5


class BuildCancelled(Exception):
    """Someone cancelled the build; raised inside the build's log calls and between its steps."""


class BuildLog:
    """A build's lines and timed steps, saved to its row at most every SAVE_EVERY_S."""

    def __init__(self, build_id: int):
        self.build_id = build_id
        self.lines: list[str] = []
        self.steps: list[dict] = []
        self.saved_at = 0.0
        self.lock = threading.Lock()

    def __call__(self, line: str) -> None:
        with self.lock:
            self.lines.append(line.rstrip("\n"))
            if time.monotonic() - self.saved_at > SAVE_EVERY_S:
                self.save()
                self.check_cancelled()

    def save(self) -> None:
        self.saved_at = time.monotonic()
        BuildRow.update(log="\n".join(self.lines) + "\n", steps=self.steps).where(
            BuildRow.id == self.build_id
        ).execute()

    def check_cancelled(self) -> None:
        status = BuildRow.select(BuildRow.status).where(BuildRow.id == self.build_id).scalar()
        if status == BuildStatus.CANCELLING:
            raise BuildCancelled(f"Build {self.build_id} was cancelled.")

    def done(self, name: str, seconds: float) -> None:
        self.steps.append({"name": name, "status": StepStatus.DONE, "seconds": round(seconds, 2)})

    @contextlib.contextmanager
    def step(self, name: str) -> Iterator[None]:
        """Time one step; its status is running, then done, failed or cancelled."""
        self.check_cancelled()
        entry = {"name": name, "status": StepStatus.RUNNING, "seconds": None}
        self.steps.append(entry)
        self.save()
        began = time.monotonic()
        try:
            yield
            entry["status"] = StepStatus.DONE
        except BuildCancelled:
            entry["status"] = StepStatus.CANCELLED
            raise
        except BaseException:
            entry["status"] = StepStatus.FAILED
            raise
        finally:
            entry["seconds"] = round(time.monotonic() - began, 2)
            self.save()

    def tail(self, n: int = TAIL_LINES) -> str:
        return "\n".join(self.lines[-n:])


INTERRUPTED = "The hub stopped during this build (a crash, or kill -9): it ended here."


def end_interrupted() -> list[tuple[BuildRow, str]]:
    """Builds that a stopped hub left running (call when no worker can hold one: the embedded queue
    at start): recorded as failed, or cancelled if they were being cancelled, with the step they
    were in marked failed. Returns each with the status it ended in."""
    ended_builds = []
    cut_short = (BuildStatus.RUNNING, BuildStatus.CANCELLING)
    for build in BuildRow.select().where(BuildRow.status.in_(cut_short)):
        status = BuildStatus.CANCELLED if build.status == BuildStatus.CANCELLING else BuildStatus.FAILED
        steps = [dict(s, status=StepStatus.FAILED) if s.get("status") == StepStatus.RUNNING else s
                 for s in build.steps]  # fmt: skip
        log = f"{build.log}{INTERRUPTED}\n"
        ended = (
            BuildRow.update(status=status, steps=steps, log=log, finished_at=utcnow())
            .where(BuildRow.id == build.id, BuildRow.status == build.status)
            .execute()
        )
        if ended:
            ended_builds.append((build, status))
    return ended_builds
