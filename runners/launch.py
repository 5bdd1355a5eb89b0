"""What the readiness loop (runners/startup.py) sees of a container just started: its log lives in
the engine, and a setup failure the flavors printed is read back from it."""

from __future__ import annotations

from .base import TAIL_LINES
from .engine import remove
from .flavors.serving import SETUP_FAILED_BEGIN, SETUP_FAILED_END
from .startup import Launched

NOT_RUNNING = {"created", "stopped", "exited", "dead", "removing", "configured"}  # quirk 7


def launched(container, url: str) -> Launched:
    """The readiness loop's view of a container just started (its log lives in the engine)."""
    return Launched(
        url=url,
        log_name="the container's log (below)",
        setup_failed=lambda: SETUP_FAILED_BEGIN.encode() in container.logs(),
        exited=lambda: _reloaded(container).status in NOT_RUNNING,
        stop=lambda: remove(container),
        stop_and_tail=lambda: _remove_and_tail(container),
    )


def _reloaded(container):
    container.reload()
    return container


def _remove_and_tail(container) -> str:
    """Read the container's log, remove it, and return the log's last lines with the setup
    failure the flavors printed (whole, when it began above the tail)."""
    try:
        logs = container.logs().decode("utf-8", errors="replace")
    except Exception as e:
        logs = f"(could not read the container's log: {e})"
    remove(container)
    tail = "\n".join(logs.splitlines()[-TAIL_LINES:])
    failure = _setup_failure(logs)
    return f"{tail}\n{failure}" if failure and failure not in tail else tail


def _setup_failure(logs: str) -> str:
    begin = logs.find(SETUP_FAILED_BEGIN)
    if begin < 0:
        return ""
    end = logs.find(SETUP_FAILED_END, begin)
    return logs[begin + len(SETUP_FAILED_BEGIN) : end if end >= 0 else None].strip()
