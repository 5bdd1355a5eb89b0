"""File locks between builds (of one hub, or of several hubs on one machine) that never block a thread.

`aid serve` runs the hub under gevent: its builds and the requests it serves are greenlets of one
thread. A blocking `fcntl.flock` stops that whole thread until the lock is free, so every request
waits with the build, and a greenlet that holds the lock can never run again to release it: two
builds waiting for the wheelhouse froze the hub for good. So a lock here is only ever tried
(LOCK_NB); while another holder has it, the caller sleeps POLL_S and tries again. `time.sleep` is
what gevent's monkey-patching replaces, so under `aid serve` the wait lets the other greenlets
run; in a plain thread or process (`aid worker`, tests) it simply waits.
"""

from __future__ import annotations

import contextlib
import fcntl
import time
from collections.abc import Iterator
from pathlib import Path

from .base import LogFn

POLL_S = 0.1
WAITING_NOTE_S = 5.0  # a "waiting for the lock" log line this often


class LockBusy(Exception):
    """`file_lock(..., wait=False)` found the lock held elsewhere."""


@contextlib.contextmanager
def file_lock(
    path: Path, shared: bool = False, wait: bool = True, log: LogFn | None = None
) -> Iterator[None]:
    """Hold an fcntl lock on `path` (created if missing) for the `with` block: exclusive, or `shared`.

    While another holder has it, wait (polling, see the module's doc), telling `log` when the wait
    begins and every WAITING_NOTE_S; a `log` that raises (a cancelled build) ends the wait. With
    `wait=False`, raise LockBusy at once instead.
    """
    with open(path, "a+b") as handle:
        _acquire(handle, fcntl.LOCK_SH if shared else fcntl.LOCK_EX, Path(path), wait, log)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


def _acquire(handle, operation: int, path: Path, wait: bool, log: LogFn | None) -> None:
    began, noted = time.monotonic(), None
    while not _tried(handle, operation):
        if not wait:
            raise LockBusy(f"The lock {path} is held elsewhere.")
        now = time.monotonic()
        if log is not None and (noted is None or now - noted >= WAITING_NOTE_S):
            noted = now
            log(f"waiting for the lock {path}, held by another build ({now - began:.0f} s)")
        time.sleep(POLL_S)


def _tried(handle, operation: int) -> bool:
    """Take the lock if it is free now; never waits."""
    try:
        fcntl.flock(handle, operation | fcntl.LOCK_NB)
    except BlockingIOError:
        return False
    return True
