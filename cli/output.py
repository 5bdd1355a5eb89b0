"""Printing replies for people (tables, scorecards) or as JSON."""

from __future__ import annotations

import json

import click


def emit_json(data) -> None:
    click.echo(json.dumps(data, indent=2, sort_keys=False))


def table(rows: list[list], headers: list[str]) -> None:
    cells = [[str("" if c is None else c) for c in row] for row in [headers, *rows]]
    widths = [max(len(r[i]) for r in cells) for i in range(len(headers))]
    for i, row in enumerate(cells):
        click.echo("  ".join(c.ljust(w) for c, w in zip(row, widths, strict=True)).rstrip())
        if i == 0:
            click.echo("  ".join("-" * w for w in widths))


def models(data: dict) -> None:
    rows = [[m["name"], m["task"], m["latest"], m["production"] or "-", m["summary"]] for m in data["models"]]
    if not rows:
        click.echo("No models match. Publish one with 'aid publish DIR'.")
        return
    table(rows, ["NAME", "TASK", "LATEST", "PRODUCTION", "SUMMARY"])


def model(data: dict) -> None:
    click.echo(f"{data['name']}  ({data['task']})  {data['summary']}")
    if data["tags"]:
        click.echo(f"tags: {', '.join(data['tags'])}")
    split = {a: ",".join(f"{v}={w}" for v, w in ws.items()) for a, ws in data.get("weights", {}).items()}
    aliases = ", ".join(f"{a} -> {split.get(a, v)}" for a, v in data["aliases"].items())
    click.echo(f"aliases: {aliases or 'none'}\n")
    rows = [
        [
            v["version"],
            v["digest"][:12],
            v["framework"],
            v["deployment"]["status"],
            v["deployment"].get("url") or "",
        ]
        for v in data["versions"]
    ]
    table(rows, ["VERSION", "DIGEST", "FRAMEWORK", "DEPLOYMENT", "ENDPOINT"])
    for v in data["versions"]:
        if error := v["deployment"].get("error"):  # why it failed, or what a ready one cannot do now
            click.echo(f"\n{v['version']}: {error.splitlines()[0]}")


def _fmt(value, pattern: str = "{}") -> str:
    return "-" if value is None else pattern.format(value)


def scorecard(card: dict) -> None:
    lat, fb = card["latency_ms"], card["feedback"]
    interval = (
        f" (95% CI {fb['accuracy_low']:.3f}-{fb['accuracy_high']:.3f})" if fb["accuracy"] is not None else ""
    )
    lines = [
        f"{card['model']}@{card['version']}, {_window(card.get('window'))}",
        f"  requests      {card['requests']}{_sources(card.get('sources'))}",
        f"  errors        {card['errors']} ({_fmt(card['error_rate'], '{:.2%}')})",
        f"  latency ms    p50 {_fmt(lat['p50'])}  p95 {_fmt(lat['p95'])}  p99 {_fmt(lat['p99'])}",
        f"  feedback      {fb['count']} ({fb['correct']} correct, {fb['incorrect']} wrong)",
        f"  accuracy      {_fmt(fb['accuracy'], '{:.3f}')}{interval}",
        f"  mean rating   {_fmt(fb['mean_rating'], '{:.2f}')}",
        f"  drift         {_drift_line(card.get('drift'))}",
    ]
    click.echo("\n".join(lines))


def _window(window: str | None) -> str:
    return f"last {window}" if window else "all time"


def _sources(sources: dict | None) -> str:
    return f" ({sources['hub']} through the hub, {sources['direct']} direct)" if sources else ""


def _drift_line(drift: dict | None) -> str:
    if not drift:
        return "no run yet ('aid drift NAME' runs one)"
    drifted = [c for c, d in drift["columns"].items() if d]
    return (
        f"{_fmt(drift['share'], '{:.0%}')} of input columns ({', '.join(drifted) or 'none'}), {drift['at']}"
    )


def leaderboard(data: dict) -> None:
    if not data["versions"]:
        click.echo(f"No model solves {data['task']!r} yet.")
        return
    rows = [
        [
            r["rank"],
            f"{r['model']}@{r['version']}",
            _fmt(r["accuracy"], "{:.3f}"),
            "-" if r["accuracy_low"] is None else f"{r['accuracy_low']:.3f}-{r['accuracy_high']:.3f}",
            _fmt(r.get("drift_share"), "{:.0%}"),
            r["feedback"],
            r["requests"],
            _fmt(r["error_rate"], "{:.2%}"),
            _fmt(r["p95_ms"]),
            r["deployment"],
        ]  # fmt: skip
        for r in data["versions"]
    ]
    head = ["#", "VERSION", "ACCURACY", "95% CI", "DRIFT", "FEEDBACK", "REQUESTS", "ERRORS", "P95 MS"]
    table(rows, [*head, "DEPLOYMENT"])


def drift(run: dict) -> None:
    head = f"{run['model']}@{run['version']}  drift run {run['id']}  ({run['status']})"
    click.echo(f"{head}\n  window      {run['window']['start']} - {run['window']['end']}")
    click.echo(f"  reference   {run['reference']}")
    for part in ("inputs", "outputs"):
        if run.get(part):
            _comparison(part, run[part])


def _comparison(part: str, result: dict) -> None:
    rows = result["rows"]
    verdict = {True: "drifted", False: "no drift", None: "no verdict"}[result["drifted"]]
    share = _fmt(result["share"], "{:.0%}")
    click.echo(f"\n{part}: {share} of columns drifted, {verdict} "
               f"({rows['current']} rows against {rows['reference']})")  # fmt: skip
    table(
        [[c["column"], c["method"] or "-", _fmt(c["score"], "{:.4g}"), _fmt(c["threshold"], "{:.3g}"),
          {True: "DRIFTED", False: "ok", None: c["note"] or "-"}[c["drifted"]]] for c in result["columns"]],
        ["COLUMN", "METHOD", "SCORE", "THRESHOLD", "VERDICT"],
    )  # fmt: skip
