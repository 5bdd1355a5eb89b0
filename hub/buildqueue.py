"""The build queue: every deployment's build is a huey task.

Embedded (the default), the queue lives in a SQLite file in the hub's home and worker threads inside
the hub run it. With `AIDHUB_QUEUE_URL=redis://...` the queue lives in Redis, so `aid worker`
processes on other machines (sharing the hub's database and container engine) run builds too.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable
from pathlib import Path

from huey import RedisHuey, SqliteHuey

from hub.errors import SettingInvalid

log = logging.getLogger(__name__)
TASK_NAME = "aidhub.build"
POLL_SECONDS = 0.2


def make_huey(queue_url: str, home: Path):
    """SqliteHuey in `home` for "" or sqlite:///path, RedisHuey for redis://; SettingInvalid otherwise."""
    if not queue_url or queue_url.startswith("sqlite:///"):
        path = queue_url.removeprefix("sqlite:///") or str(home / "queue.db")
        Path(path).parent.mkdir(parents=True, exist_ok=True)
        return SqliteHuey("aidhub", filename=path, results=False)
    if queue_url.startswith(("redis://", "rediss://", "unix://")):
        try:
            return RedisHuey("aidhub", url=queue_url, results=False)
        except ImportError as e:
            raise SettingInvalid(
                f"AIDHUB_QUEUE_URL={queue_url} needs the redis client: pip install 'aidhub[redis]'."
            ) from e
    raise SettingInvalid(
        f"AIDHUB_QUEUE_URL={queue_url!r} is not a queue; use redis://HOST:6379/0 or leave it empty "
        "for the embedded SQLite queue."
    )


class BuildQueue:
    """Puts build ids on the queue; `start(n)` runs n worker threads that call `run_build(id)`."""

    def __init__(self, huey, run_build: Callable[[int], None]):
        self.huey = huey
        self.task = huey.task(name=TASK_NAME)(run_build)
        self.threads: list[threading.Thread] = []
        self.stopping = threading.Event()
        self.executed = 0  # tasks this process's workers ran to the end

    def submit(self, build_id: int) -> None:
        self.task(build_id)

    def pending(self) -> int:
        return self.huey.pending_count()

    def start(self, workers: int) -> None:
        for n in range(workers):
            thread = threading.Thread(target=self.work, name=f"build-worker-{n}", daemon=True)
            thread.start()
            self.threads.append(thread)

    def work(self) -> None:
        """Run tasks until `stop()`: the loop of one huey worker, without its signal handling."""
        while not self.stopping.is_set():
            try:
                task = self.huey.dequeue()
            except Exception:  # the storage is away for a moment (Redis restarting): try again
                log.exception("Reading the build queue failed")
                self.stopping.wait(2.0)
                continue
            if task is None:
                self.stopping.wait(POLL_SECONDS)
                continue
            self.huey.execute(task)  # huey logs a task's exception; builds record their own
            self.executed += 1

    def stop(self) -> None:
        self.stopping.set()
