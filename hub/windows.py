"""The window and step of a scorecard as users write them ('24h', '15m', 'all'), checked here so that a
bad one is a 422 naming the value and an example."""

from __future__ import annotations

from datetime import timedelta

from hub.errors import BadInput
from vocab.times import parse_duration

ALL = "all"
MAX_POINTS = 5000  # a chart of more steps than this is not a chart


def scorecard_span(window: str | None, step: str | None) -> tuple[timedelta | None, timedelta | None]:
    """('24h', None) -> (24 hours, None: the scorecard picks); window 'all' (or None) -> None."""
    span = None if window in (None, ALL) else _duration("window", window, "24h, 7d or all")
    every = None if step in (None, "") else _duration("step", step, "5m, 1h or 1d")
    if span and every and span / every > MAX_POINTS:
        raise BadInput(
            f"A window of {window} in steps of {step} is {span // every} points; the most is {MAX_POINTS}. "
            f"Use a longer step, e.g. {_minutes(span / MAX_POINTS)}m, or leave step out."
        )
    return span, every


def _duration(name: str, text: str, examples: str) -> timedelta:
    try:
        return parse_duration(text)
    except ValueError as e:
        raise BadInput(
            f"The scorecard {name} {text!r} is not a duration; write minutes, hours or days, e.g. {examples}."
        ) from e


def _minutes(span: timedelta) -> int:
    return -(-span // timedelta(minutes=1))
