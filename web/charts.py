"""Geometry for the scorecard's small inline SVG chart (requests and errors per minute).

The template draws rectangles from these numbers; no chart library, no JavaScript.
"""

from __future__ import annotations

from datetime import datetime, timedelta

WIDTH, HEIGHT = 600, 120
MINUTES = 60


def _minute(text: str) -> datetime:
    return datetime.fromisoformat(text.removesuffix("Z"))


def _bar(slot: int, point: dict, at: datetime, scale: float) -> dict:
    step = WIDTH / MINUTES
    requests, errors = point.get("requests", 0), point.get("errors", 0)
    h_req, h_err = requests * scale, errors * scale
    return {
        "x": round(slot * step + 1, 1), "w": round(step - 2, 1),
        "y": round(HEIGHT - h_req, 1), "h": round(h_req, 1),
        "err_y": round(HEIGHT - h_err, 1), "err_h": round(h_err, 1),
        "label": f"{at:%H:%M} UTC: {requests} requests, {errors} errors",
    }  # fmt: skip


def requests_chart(series: list[dict]) -> dict | None:
    """Bars for the hour ending at the newest minute in the series; None without any request."""
    if not any(p.get("requests") for p in series):
        return None
    points = {_minute(p["minute"]): p for p in series}
    end = max(points)
    start = end - timedelta(minutes=MINUTES - 1)
    window = {at: p for at, p in points.items() if at >= start}
    peak = max((p.get("requests", 0) for p in window.values()), default=0) or 1
    bars = [
        _bar(int((at - start).total_seconds() // 60), p, at, HEIGHT / peak)
        for at, p in sorted(window.items())
    ]
    return {
        "width": WIDTH, "height": HEIGHT, "bars": bars, "peak": peak,
        "start": f"{start:%H:%M}", "end": f"{end:%H:%M} UTC",
    }  # fmt: skip
