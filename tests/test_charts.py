"""The scorecard's chart geometry (web/charts.py, web/chart_axes.py) on hand-made series shaped as
Hub.scorecard returns them: ticks, scales, gaps, bands and the empty charts."""

from __future__ import annotations

from datetime import datetime, timedelta

from web import chart_axes, charts
from web.chart_axes import BOTTOM, HEIGHT, LEFT, RIGHT, TOP, WIDTH, Frame, time_ticks, value_ticks

START = datetime(2026, 12, 2, 4, 0)


def point(at: datetime, requests: int = 0, **values) -> dict:
    """One step of a scorecard series (contract shape), empty unless told otherwise."""
    stamp = at.isoformat() + "Z"
    empty = {"errors": 0, "direct": 0, "feedback": 0, "correct": 0, "incorrect": 0}
    nones = dict.fromkeys(("p50", "p95", "p99", "accuracy", "accuracy_low", "accuracy_high"))
    return {"at": stamp, "minute": stamp, "requests": requests, **empty, **nones, **values}


def series(count: int, step: timedelta, **busy) -> list[dict]:
    """`count` empty steps from START; busy={index: values} fills some."""
    return [point(START + i * step, **busy.get(f"s{i}", {})) for i in range(count)]


# --- axes ---------------------------------------------------------------------------------------


def test_time_ticks_of_an_hour_are_quarter_hours_labelled_hh_mm():
    ticks = time_ticks(START, START + timedelta(hours=1))
    assert [label for _, label in ticks] == ["04:00", "04:15", "04:30", "04:45", "05:00"]


def test_time_ticks_of_a_day_are_six_hours_apart_on_the_clock():
    ticks = time_ticks(datetime(2026, 12, 2, 4, 15), datetime(2026, 12, 3, 4, 15))
    assert [label for _, label in ticks] == ["06:00", "12:00", "18:00", "00:00"]


def test_time_ticks_of_a_week_and_a_month_are_dates_at_utc_midnight():
    week = time_ticks(datetime(2026, 12, 2, 4, 15), datetime(2026, 12, 9, 4, 15))
    assert [label for _, label in week] == ["Dec 3", "Dec 5", "Dec 7", "Dec 9"]
    assert all((at.hour, at.minute) == (0, 0) for at, _ in week)
    month = time_ticks(datetime(2026, 11, 2), datetime(2026, 12, 2))
    assert [label for _, label in month] == ["Nov 5", "Nov 12", "Nov 19", "Nov 26"]


def test_value_ticks_are_three_to_five_nice_numbers_covering_the_peak():
    assert value_ticks(10, integer=True) == [0, 5, 10]
    assert value_ticks(7, integer=True) == [0, 2, 4, 6, 8]
    assert value_ticks(3, integer=True) == [0, 1, 2, 3]
    assert value_ticks(0, integer=True) == [0, 1]  # an empty chart still has a scale
    assert value_ticks(137.5) == [0, 50, 100, 150]
    assert value_ticks(1.0) == [0, 0.25, 0.5, 0.75, 1.0]
    assert value_ticks(0.3) == [0, 0.1, 0.2, 0.3]


def test_frame_maps_the_window_and_the_scale_onto_the_plot_area():
    f = Frame(START, START + timedelta(hours=1), 10)
    assert (f.x(START), f.x(START + timedelta(minutes=30)), f.x(START + timedelta(hours=1))) == (
        LEFT,
        round(LEFT + (WIDTH - LEFT - RIGHT) / 2, 1),
        WIDTH - RIGHT,
    )
    assert (f.y(0), f.y(10)) == (HEIGHT - BOTTOM, TOP)
    axes = f.axes([0, 5, 10], chart_axes.count_label, "req/1m")
    assert [t["label"] for t in axes["y_ticks"]] == ["0", "5", "10"]
    assert [(t["label"], t["anchor"]) for t in axes["x_ticks"]][::4] == [("04:00", "start"), ("05:00", "end")]


# --- lines: gaps and bands ----------------------------------------------------------------------


def test_segments_split_at_missing_values_and_drop_empty_runs():
    points = [(1, 2), (2, None), (3, 4), (4, 5), (5, None), (6, None)]
    assert charts.segments(points) == [[(1, 2)], [(3, 4), (4, 5)]]
    assert charts.segments([]) == []


def test_band_polygon_runs_along_the_highs_and_back_along_the_lows():
    assert charts.band_polygon([(10, 90, 50), (20, 80, 40)]) == "10,50 20,40 20,80 10,90"
    assert charts.band_polygon([(10, 90, 50)], half=2.5) == "7.5,50 12.5,50 12.5,90 7.5,90"


# --- the charts ---------------------------------------------------------------------------------


def test_traffic_bars_stack_direct_calls_on_hub_calls_with_errors_overlaid():
    step = timedelta(minutes=15)
    points = charts.timed(series(4, step, s1={"requests": 10, "direct": 4, "errors": 5}, s3={"requests": 2}))
    chart = charts.traffic_chart(points, step, "15m")
    assert chart["title"] == "Requests per 15m" and chart["empty"] is None
    assert chart["axes"]["unit"] == "req/15m" and chart["totals"] == {
        "requests": 12,
        "direct": 4,
        "errors": 5,
    }
    first, second = chart["bars"]  # no bar for the empty steps
    bottom, plot = HEIGHT - BOTTOM, HEIGHT - TOP - BOTTOM
    assert (first["y"], first["h"]) == (TOP, plot)  # 10 requests fill the 0-10 scale
    assert (first["direct_y"], first["direct_h"]) == (TOP, round(plot * 0.4, 1))
    assert (first["err_y"], first["err_h"]) == (bottom - plot / 2, plot / 2)
    assert first["label"] == "Dec 2 04:15 UTC: 10 requests (4 direct), 5 errors"
    assert first["x"] == round(LEFT + (WIDTH - LEFT - RIGHT) / 4, 1)


def test_a_window_without_requests_is_an_empty_chart_that_says_so():
    step = timedelta(minutes=1)
    points = charts.timed(series(60, step))
    assert charts.traffic_chart(points, step, "1m") == {
        "title": "Requests per 1m",
        "empty": "No requests in this window.",
    }
    assert charts.latency_chart(points, step)["empty"] == "No latency measured in this window."
    assert charts.accuracy_chart(points, step)["empty"] == "No judged predictions in this window."
    assert charts.latency_chart([], step)["empty"] and charts.traffic_chart([], step, "1m")["empty"]


def test_latency_lines_break_where_a_step_had_no_calls():
    step = timedelta(minutes=1)
    busy = {"requests": 1, "p50": 10.0, "p95": 40.0, "p99": 80.0}
    points = charts.timed(series(5, step, s0=busy, s1=busy, s3=busy | {"p99": 130.0}))
    chart = charts.latency_chart(points, step)
    assert chart["axes"]["unit"] == "ms"
    assert [t["label"] for t in chart["axes"]["y_ticks"]] == ["0", "50", "100", "150"]
    p50, p95, p99 = chart["lines"]
    assert [line["name"] for line in chart["lines"]] == ["p50", "p95", "p99"]
    assert len(p99["segments"]) == 2 and len(p99["segments"][0].split()) == 2
    assert [d["label"] for d in p99["dots"]][-1] == "Dec 2 04:03 UTC: p99 130 ms"
    assert p99["dots"][0]["x"] == round(LEFT + (WIDTH - LEFT - RIGHT) * 0.5 / 5, 1)  # mid-step


def test_accuracy_is_a_line_inside_its_wilson_band_on_a_0_to_100_percent_scale():
    step = timedelta(hours=2)
    judged = {"requests": 20, "correct": 9, "incorrect": 1, "accuracy": 0.9}
    bounds = {"accuracy_low": 0.5958, "accuracy_high": 0.9821}
    points = charts.timed(series(12, step, s2=judged | bounds, s3=judged | bounds, s7=judged | bounds))
    chart = charts.accuracy_chart(points, step)
    assert [t["label"] for t in chart["axes"]["y_ticks"]] == ["0%", "25%", "50%", "75%", "100%"]
    assert len(chart["bands"]) == 2 and len(chart["bands"][0].split()) == 4
    f = Frame(points[0][0], points[-1][0] + step, 1.0)
    x = f.x(START + 2.5 * step)
    assert chart["bands"][0].split()[0] == f"{x},{f.y(0.9821)}"
    label = chart["lines"][0]["dots"][0]["label"]
    assert label == "Dec 2 08:00 UTC: 90.0% right of 10 judged (95% CI 59.6%–98.2%)"


def test_drift_share_shows_the_finished_runs_inside_the_window():
    span = (START, START + timedelta(days=1))
    runs = [
        {"id": 3, "at": "2026-12-02T20:00:00Z", "status": "done", "share": 0.5},
        {"id": 2, "at": "2026-12-02T12:00:00Z", "status": "failed", "share": None},
        {"id": 1, "at": "2026-12-02T06:00:00Z", "status": "done", "share": 0.25},
        {"id": 0, "at": "2026-11-20T06:00:00Z", "status": "done", "share": 1.0},  # before the window
    ]
    chart = charts.drift_chart(runs, span)
    assert chart["axes"]["unit"] == "% drifted"
    dots = chart["lines"][0]["dots"]
    assert [d["label"] for d in dots] == [
        "Dec 2 06:00 UTC: 25% of columns drifted",
        "Dec 2 20:00 UTC: 50% of columns drifted",
    ]
    assert charts.drift_chart(runs[:2], (START, START + timedelta(hours=1)))["empty"] == (
        "No drift run in this window."
    )
    assert charts.drift_chart(runs, None)["lines"][0]["dots"][0]["label"].startswith("Nov 20")


def test_drift_columns_put_each_score_against_its_threshold():
    summary = {"run": 7, "columns": {"x.0": True, "x.1": False, "x.2": None}}
    columns = [
        {"column": "x.0", "method": "K-S p_value", "score": 0.01, "threshold": 0.05, "drifted": True},
        {"column": "x.1", "method": "Wasserstein", "score": 0.2, "threshold": 0.1, "drifted": False},
        {
            "column": "x.2",
            "score": None,
            "threshold": None,
            "drifted": None,
            "note": "not enough data: 3 rows",
        },
    ]
    rows = charts.drift_columns(summary, [{"id": 7, "inputs": {"columns": columns}}])
    assert [(r["column"], r["verdict"], r["text"]) for r in rows] == [
        ("x.0", "drifted", "drifted"),
        ("x.1", "stable", "stable"),
        ("x.2", "no-verdict", "not enough data"),
    ]
    assert rows[0]["detail"] == "K-S p_value 0.01, threshold 0.05"
    assert rows[0]["meter"] == {"score": 16.0, "threshold": 80.0}
    assert rows[1]["meter"] == {"score": 80.0, "threshold": 40.0}
    assert (rows[2]["meter"], rows[2]["detail"]) == (None, "not enough data: 3 rows")
    assert charts.drift_columns(None, []) == []
    # a run the history no longer holds: the verdicts alone
    assert [r["meter"] for r in charts.drift_columns(summary, [])] == [None, None, None]


def test_scorecard_charts_read_the_step_and_label_long_windows_by_date():
    card = {"window": "7d", "step": "6h", "series": series(28, timedelta(hours=6), s5={"requests": 3})}
    drawn = charts.scorecard_charts(card | {"drift": None}, [])
    labels = [t["label"] for t in drawn["traffic"]["axes"]["x_ticks"]]
    assert labels == ["Dec 3", "Dec 5", "Dec 7", "Dec 9"] and drawn["traffic"]["title"] == "Requests per 6h"
    assert drawn["drift"]["empty"] and drawn["columns"] == []
    assert charts.step_of(None, charts.timed(card["series"])) == timedelta(hours=6)
