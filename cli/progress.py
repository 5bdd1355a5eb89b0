"""Byte counts for people: sizes in decimal units, and a progress bar on stderr while bytes move.

On a terminal the bar is redrawn in place (`\\r`) a few times a second; into a pipe or a log file it is
a plain line every 10% or every 5 seconds, whichever comes first. Transfers under 16 MB finish before
a bar could say anything and show none."""

from __future__ import annotations

import sys
import time
from typing import TextIO

UNITS = ("B", "kB", "MB", "GB", "TB", "PB")
REDRAW_S = 0.1  # a terminal's bar is redrawn at most this often
LINE_EVERY_S = 5.0  # a pipe gets a line at least this often...
LINE_EVERY_SHARE = 0.1  # ...and at every 10% of the bytes
BAR_WIDTH = 24
QUIET_BELOW = 16 * 1000 * 1000  # bytes: smaller transfers show no bar


def human(size: float) -> str:
    """Bytes as people read them: 950 B, 31.5 MB, 1.2 GB, 700 MB."""
    size = float(size)
    for unit in UNITS:
        if abs(size) < 1000 or unit == UNITS[-1]:
            break
        size /= 1000
    if unit == "B":
        return f"{int(size)} B"
    return f"{size:.1f} {unit}" if abs(size) < 100 else f"{size:.0f} {unit}"


def duration(seconds: float) -> str:
    """0:08, 12:30, 1:02:03."""
    seconds = max(0, int(round(seconds)))
    hours, rest = divmod(seconds, 3600)
    minutes, seconds = divmod(rest, 60)
    return f"{hours}:{minutes:02d}:{seconds:02d}" if hours else f"{minutes}:{seconds:02d}"


class Progress:
    """`done` of `total` bytes; `advance(n)` as bytes move (negative when a transfer steps back),
    `close()` at the end. `done` may start above zero: bytes a resumed transfer already had."""

    def __init__(self, total: int, done: int = 0, stream: TextIO | None = None, tty: bool | None = None):
        self.stream = stream or sys.stderr
        self.tty = self.stream.isatty() if tty is None else tty
        self.total, self.done, self.start_done = total, done, done
        self.started = self.last_drawn = time.monotonic()
        self.last_step, self.printed = self._step(), done
        self.width = 0
        self.quiet = total - done < QUIET_BELOW

    def advance(self, n: int) -> None:
        self.done += n
        now = time.monotonic()
        if self.quiet:
            return
        if self.tty:
            if now - self.last_drawn >= REDRAW_S:
                self._draw(now)
        elif now - self.last_drawn >= LINE_EVERY_S or self._step() > self.last_step:
            self._line(now)

    def close(self) -> None:
        now = time.monotonic()
        if self.quiet:
            return
        if self.tty:
            self._draw(now)
            self.stream.write("\n")
        elif self.done != self.printed:
            self._line(now)
        self.stream.flush()

    def _step(self) -> int:
        return int(self._share() / LINE_EVERY_SHARE + 1e-9)

    def _share(self) -> float:
        return 1.0 if self.total <= 0 else min(1.0, self.done / self.total)

    def text(self, now: float) -> str:
        """`300 MB / 1.2 GB  25%  112.3 MB/s  ETA 0:08`."""
        elapsed = max(now - self.started, 1e-6)
        rate = (self.done - self.start_done) / elapsed
        left = self.total - self.done
        eta = duration(left / rate) if rate > 0 and left > 0 else ("0:00" if left <= 0 else "-")
        share = f"{self._share():4.0%}"
        return f"{human(self.done)} / {human(self.total)}  {share}  {rate / 1e6:.1f} MB/s  ETA {eta}"

    def _draw(self, now: float) -> None:
        filled = int(BAR_WIDTH * self._share())
        line = f"[{'#' * filled}{'.' * (BAR_WIDTH - filled)}] {self.text(now)}"
        self.stream.write("\r" + line.ljust(self.width))
        self.stream.flush()
        self.width, self.last_drawn = len(line), now

    def _line(self, now: float) -> None:
        self.stream.write(f"  {self.text(now)}\n")
        self.stream.flush()
        self.last_drawn, self.last_step, self.printed = now, self._step(), self.done
