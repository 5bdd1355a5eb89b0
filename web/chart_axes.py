"""Axes for the scorecard's SVG charts: nice ticks, scales and labels, in the chart's own units.

Pure geometry on plain values (no Flask): web/charts.py lays the charts out with these, and
templates/_charts.html draws what it returns.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

WIDTH, HEIGHT = 360, 190  # the viewBox; the SVG scales to its box, text with it
LEFT, RIGHT, TOP, BOTTOM = 40, 8, 18, 22  # room for the y labels, the unit and the x labels
TIME_STEPS_MINUTES = [
    1, 2, 5, 10, 15, 30, 60, 120, 180, 240, 360, 720,
    1440, 2 * 1440, 7 * 1440, 14 * 1440, 30 * 1440, 91 * 1440, 182 * 1440, 365 * 1440,
]  # fmt: skip
EDGE = 16  # a time label closer than this to an end of the axis is anchored inward
MOST_TIME_TICKS = 6
MOST_VALUE_STEPS = 4
EPOCH = datetime(1970, 1, 1)


def parse_time(text: str) -> datetime:
    """'2026-12-02T04:15:00Z' -> a naive UTC datetime."""
    value = datetime.fromisoformat(text)
    return value.astimezone(UTC).replace(tzinfo=None) if value.tzinfo else value


def when_label(at: datetime) -> str:
    """What a tooltip says of a time: 'Dec 2 04:15 UTC'."""
    return f"{at:%b} {at.day} {at:%H:%M} UTC"


# --- time (x) axis ---------------------------------------------------------------------------


def time_step(span: timedelta) -> timedelta:
    """The smallest step from TIME_STEPS_MINUTES that puts at most MOST_TIME_TICKS ticks in `span`."""
    minutes = span.total_seconds() / 60
    for step in TIME_STEPS_MINUTES:
        if minutes / step < MOST_TIME_TICKS:
            return timedelta(minutes=step)
    return timedelta(minutes=TIME_STEPS_MINUTES[-1])


def time_label(at: datetime, step: timedelta) -> str:
    """'04:00' while ticks are under a day apart, 'Dec 2' once they are days apart."""
    return f"{at:%H:%M}" if step < timedelta(days=1) else f"{at:%b} {at.day}"


def time_ticks(start: datetime, end: datetime) -> list[tuple[datetime, str]]:
    """Ticks on whole multiples of a nice step (UTC midnights for days) within [start, end]."""
    step = time_step(end - start)
    seconds = step.total_seconds()
    first = math.ceil((start - EPOCH).total_seconds() / seconds)
    ticks, at = [], EPOCH + timedelta(seconds=first * seconds)
    while at <= end:
        ticks.append((at, time_label(at, step)))
        at += step
    return ticks


# --- value (y) axis ---------------------------------------------------------------------------


def value_step(peak: float, integer: bool = False) -> float:
    """The smallest 1, 2, 2.5 or 5 × 10^k that covers `peak` in at most MOST_VALUE_STEPS steps."""
    peak = peak if peak > 0 else 1
    power = 10 ** math.floor(math.log10(peak / MOST_VALUE_STEPS))
    for base in (1, 2, 2.5, 5, 10, 20):
        step = base * power
        if integer and (step < 1 or step != int(step)):
            continue
        if math.ceil(round(peak / step, 9)) <= MOST_VALUE_STEPS:
            return step
    return 10 * power  # unreachable: 10 × power always covers peak in 4 steps or fewer


def value_ticks(peak: float, integer: bool = False) -> list[float]:
    """0 up to the first multiple of the nice step at or above `peak`."""
    step = value_step(peak, integer)
    count = max(1, math.ceil(round((peak if peak > 0 else 1) / step, 9)))
    return [round(i * step, 10) for i in range(count + 1)]


def count_label(value: float) -> str:
    return f"{value:g}"


def percent_label(value: float) -> str:
    return f"{value * 100:g}%"


# --- the frame: scales and the axes' drawing --------------------------------------------------


@dataclass(frozen=True)
class Frame:
    """Maps times onto x and values onto y inside the plot area of a WIDTH × HEIGHT viewBox."""

    start: datetime
    end: datetime
    top_value: float

    def x(self, at: datetime) -> float:
        span = (self.end - self.start).total_seconds() or 1
        return round(LEFT + (at - self.start).total_seconds() / span * (WIDTH - LEFT - RIGHT), 1)

    def y(self, value: float) -> float:
        return round(HEIGHT - BOTTOM - value / (self.top_value or 1) * (HEIGHT - TOP - BOTTOM), 1)

    def axes(self, ticks: list[float], label, unit: str) -> dict:
        """What the template draws: grid lines with their labels, time ticks, the unit."""
        return {
            "width": WIDTH, "height": HEIGHT, "left": LEFT, "right": WIDTH - RIGHT,
            "top": TOP, "bottom": HEIGHT - BOTTOM, "unit": unit,
            "y_ticks": [{"y": self.y(v), "label": label(v)} for v in ticks],
            "x_ticks": [x_tick(self.x(at), text) for at, text in time_ticks(self.start, self.end)],
        }  # fmt: skip


def x_tick(x: float, label: str) -> dict:
    """A time tick; a label near either end of the axis is anchored so that it stays inside."""
    anchor = "start" if x - LEFT < EDGE else "end" if WIDTH - RIGHT - x < EDGE else "middle"
    return {"x": x, "label": label, "anchor": anchor}


def frame(start: datetime, end: datetime, ticks: list[float]) -> Frame:
    return Frame(start, end, ticks[-1])
