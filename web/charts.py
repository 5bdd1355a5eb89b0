"""The scorecard's charts as geometry: traffic, latency, accuracy and drift over the window.

Pure functions from the hub's plain dicts (a scorecard's series, a drift history) to numbers and
labels; templates/_charts.html draws them as inline SVG (no chart library, no JavaScript). A chart
with nothing to show is `{"title": ..., "empty": "No ... in this window."}` and no geometry.
"""

from __future__ import annotations

from datetime import datetime, timedelta

from vocab.states import DriftRunStatus
from vocab.times import parse_duration
from web.chart_axes import (
    Frame,
    count_label,
    frame,
    parse_time,
    percent_label,
    value_ticks,
    when_label,
)

Point = tuple[datetime, dict]
LATENCY_LINES = ("p50", "p95", "p99")
METER_ROOM = 0.8  # the larger of score and threshold fills this much of a column's meter


def timed(series: list[dict]) -> list[Point]:
    """The series' points with their times, oldest first."""
    return sorted(((parse_time(p.get("at") or p["minute"]), p) for p in series), key=lambda tp: tp[0])


def step_of(text: str | None, points: list[Point]) -> timedelta:
    """The series' step: the scorecard's own ('15m'), else the gap between its first points."""
    try:
        return parse_duration(text or "")
    except ValueError:
        gaps = [b[0] - a[0] for a, b in zip(points, points[1:], strict=False)]
        return min(gaps, default=timedelta(minutes=1))


def segments(points: list[tuple]) -> list[list[tuple]]:
    """Runs of points without a gap: a None in a point (no value that step) splits the line."""
    runs: list[list[tuple]] = [[]]
    for point in points:
        if None in point:
            runs.append([])
        else:
            runs[-1].append(point)
    return [run for run in runs if run]


def polyline(points: list[tuple]) -> str:
    return " ".join(f"{x},{y}" for x, y in points)


def band_polygon(run: list[tuple[float, float, float]], half: float = 0.0) -> str:
    """A band's outline from (x, y_low, y_high) points: along the highs, back along the lows; a
    band of one point is `half` wide either side of it (else it would have no area)."""
    if len(run) == 1:
        x, low, high = run[0]
        run = [(round(x - half, 1), low, high), (round(x + half, 1), low, high)]
    highs = [(x, high) for x, _, high in run]
    lows = [(x, low) for x, low, _ in reversed(run)]
    return polyline(highs + lows)


# --- traffic ------------------------------------------------------------------------------------


def _bar(f: Frame, at: datetime, step: timedelta, p: dict) -> dict:
    x, x_next = f.x(at), f.x(at + step)
    gap = min(1.0, (x_next - x) * 0.2)
    requests, errors = p.get("requests", 0), p.get("errors", 0)
    direct = min(p.get("direct", 0), requests)
    y, y_hub, y_err = f.y(requests), f.y(requests - direct), f.y(errors)
    return {
        "x": x, "w": round(max(x_next - x - gap, 0.5), 1),
        "y": y, "h": round(f.y(0) - y, 1), "direct_y": y, "direct_h": round(y_hub - y, 1),
        "err_y": y_err, "err_h": round(f.y(0) - y_err, 1),
        "label": f"{when_label(at)}: {requests} requests ({direct} direct), {errors} errors",
    }  # fmt: skip


def traffic_chart(points: list[Point], step: timedelta, step_text: str) -> dict:
    """Requests per step as bars, the direct calls' part shaded, errors overlaid in red."""
    chart = {"title": f"Requests per {step_text}", "empty": "No requests in this window."}
    if not any(p.get("requests") for _, p in points):
        return chart
    ticks = value_ticks(max(p["requests"] for _, p in points), integer=True)
    f = frame(points[0][0], points[-1][0] + step, ticks)
    totals = {k: sum(p.get(k, 0) for _, p in points) for k in ("requests", "direct", "errors")}
    return chart | {
        "empty": None, "axes": f.axes(ticks, count_label, f"req/{step_text}"), "totals": totals,
        "bars": [_bar(f, at, step, p) for at, p in points if p.get("requests")],
    }  # fmt: skip


# --- lines: latency, accuracy, drift share ------------------------------------------------------


def _line(f: Frame, points: list[Point], key: str, mid: timedelta, say) -> dict:
    """One series' line (split at steps without a value) and a dot with a tooltip per value."""
    placed = [(f.x(at + mid), _y(f, p, key)) for at, p in points]
    dots = [
        {"x": x, "y": y, "label": f"{when_label(at)}: {say(p)}"}
        for (x, y), (at, p) in zip(placed, points, strict=True)
        if y is not None
    ]
    return {"name": key, "segments": [polyline(run) for run in segments(placed)], "dots": dots}


def latency_chart(points: list[Point], step: timedelta) -> dict:
    """p50, p95 and p99 latency per step, in milliseconds."""
    chart = {"title": "Latency p50 / p95 / p99", "empty": "No latency measured in this window."}
    values = [p[k] for _, p in points for k in LATENCY_LINES if p.get(k) is not None]
    if not values:
        return chart
    ticks = value_ticks(max(values))
    f = frame(points[0][0], points[-1][0] + step, ticks)
    lines = [
        _line(f, points, key, step / 2, lambda p, key=key: f"{key} {p[key]:g} ms") for key in LATENCY_LINES
    ]
    return chart | {"empty": None, "axes": f.axes(ticks, count_label, "ms"), "lines": lines}


def _judged(p: dict) -> str:
    low, high = (f"{p[k] * 100:.1f}%" for k in ("accuracy_low", "accuracy_high"))
    judged = p.get("correct", 0) + p.get("incorrect", 0)
    return f"{p['accuracy'] * 100:.1f}% right of {judged} judged (95% CI {low}–{high})"


def _y(f: Frame, p: dict, key: str) -> float | None:
    return None if p.get(key) is None else f.y(p[key])


def accuracy_chart(points: list[Point], step: timedelta) -> dict:
    """Feedback accuracy per step, with its Wilson 95% interval as a shaded band; 0-100%."""
    chart = {"title": "Accuracy (95% interval)", "empty": "No judged predictions in this window."}
    if all(p.get("accuracy") is None for _, p in points):
        return chart
    ticks = value_ticks(1.0)
    f = frame(points[0][0], points[-1][0] + step, ticks)
    band = [(f.x(at + step / 2), _y(f, p, "accuracy_low"), _y(f, p, "accuracy_high")) for at, p in points]
    half_step = max(1.0, band[0][0] - f.x(points[0][0]))
    return chart | {
        "empty": None, "axes": f.axes(ticks, percent_label, "% right"),
        "bands": [band_polygon(run, half_step) for run in segments(band)],
        "lines": [_line(f, points, "accuracy", step / 2, _judged)],
    }  # fmt: skip


def _drifted(run: dict) -> str:
    return f"{percent_label(run['share'])} of columns drifted"


def drift_chart(runs: list[dict], span: tuple[datetime, datetime] | None) -> dict:
    """The share of drifted input columns of each finished drift run in `span` (else all runs)."""
    chart = {"title": "Drift share", "empty": "No drift run in this window."}
    done = [(parse_time(r["at"]), r) for r in runs if r.get("status") == DriftRunStatus.DONE]
    done = sorted((at, r) for at, r in done if r.get("share") is not None)
    if span is None and done:
        span = (done[0][0] - timedelta(hours=1), done[-1][0] + timedelta(hours=1))
    points = [(at, r) for at, r in done if span and span[0] <= at <= span[1]]
    if not points:
        return chart
    ticks = value_ticks(1.0)
    f = frame(*span, ticks)
    line = _line(f, points, "share", timedelta(0), _drifted)
    return chart | {"empty": None, "axes": f.axes(ticks, percent_label, "% drifted"), "lines": [line]}


# --- per-column drift of the latest run ---------------------------------------------------------

VERDICTS = {
    True: ("drifted", "drifted"),
    False: ("stable", "stable"),
    None: ("no-verdict", "not enough data"),
}


def _meter(score: float, threshold: float) -> dict:
    top = max(score, threshold) / METER_ROOM or 1.0
    return {"score": round(score / top * 100, 1), "threshold": round(threshold / top * 100, 1)}


def drift_column(name: str, drifted: bool | None, result: dict) -> dict:
    """One input column's verdict, with its test's score against its threshold when it had one."""
    verdict, text = VERDICTS[drifted]
    score, threshold = result.get("score"), result.get("threshold")
    detail = result.get("note") or ""
    row = {"column": name, "verdict": verdict, "text": text, "detail": detail, "meter": None}
    if score is None or threshold is None:
        return row
    detail = f"{result.get('method') or 'score'} {score:.3g}, threshold {threshold:.3g}"
    return row | {"detail": detail, "meter": _meter(score, threshold)}


def drift_columns(summary: dict | None, runs: list[dict]) -> list[dict]:
    """Each input column of the scorecard's latest drift run, with its test's numbers from `runs`."""
    if summary is None:
        return []
    run = next((r for r in runs if r.get("id") == summary["run"]), None)
    found = {c["column"]: c for c in ((run or {}).get("inputs") or {}).get("columns", [])}
    return [drift_column(name, drifted, found.get(name, {})) for name, drifted in summary["columns"].items()]


# --- the scorecard's charts together ------------------------------------------------------------


def scorecard_charts(card: dict, runs: list[dict]) -> dict:
    """Every chart of a scorecard over its window; `runs` is the version's drift history."""
    points = timed(card.get("series", []))
    step = step_of(card.get("step"), points)
    step_text = card.get("step") or f"{int(step.total_seconds() // 60)}m"
    span = (points[0][0], points[-1][0] + step) if points else None
    return {
        "traffic": traffic_chart(points, step, step_text),
        "latency": latency_chart(points, step),
        "accuracy": accuracy_chart(points, step),
        "drift": drift_chart(runs, span),
        "columns": drift_columns(card.get("drift"), runs),
    }
