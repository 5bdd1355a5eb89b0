"""`aid shadow` and `aid compare`: copy a share of a model's live calls to another version, off the
request path (its answers are logged, never returned), and compare two versions on the same inputs."""

from __future__ import annotations

import click

from cli import output
from cli.client import HubClient

JSON = click.option("--json", "as_json", is_flag=True, help="Print the reply as JSON.")


@click.command()
@click.argument("name")
@click.argument("version", required=False)
@click.option(
    "--share", type=float, default=0.2, show_default=True, help="The share of calls to copy, in (0, 1]."
)
@click.option("--off", is_flag=True, help="Stop copying calls to the shadow.")
@JSON
@click.pass_obj
def shadow(client: HubClient, name: str, version: str | None, share: float, off: bool, as_json: bool) -> None:
    """Copy a share of the calls NAME's serving version answers to VERSION; without VERSION, show the
    shadow; with --off, stop."""
    path = f"/api/v1/models/{name}/shadow"
    if off and version:
        raise click.UsageError(f"Give VERSION ({version}) or --off, not both.")
    if off:
        data = client.request("DELETE", path)
    elif version:
        data = client.put(path, {"version": version, "share": share})
    else:
        data = client.get(path)
    if as_json:
        output.emit_json(data)
    else:
        click.echo(said(data, stopped=off))


def said(data: dict, stopped: bool = False) -> str:
    name, found = data["model"], data["shadow"]
    if found is None:
        return f"{name} has no shadow version. Start one with 'aid shadow {name} VERSION --share 0.2'."
    if stopped:
        return f"Stopped copying {name}'s calls to {found['version']}."
    counts = f"{found['copied']} copied, {found['failed']} failed, {found['dropped']} dropped"
    share, serving = f"{found['share'] * 100:g}%", data["serving"]
    return (
        f"{name}: {share} of the calls to {serving} are copied to {found['version']} "
        f"(since {found['since']}); its answers are logged, never returned.\n"
        f"In this hub process: {counts}. Compare: aid compare {name} {serving} {found['version']}"
    )


@click.command()
@click.argument("name")
@click.argument("a")
@click.argument("b")
@click.option(
    "--window", default="24h", show_default=True, help="How far back, e.g. 24h or 7d; all: all time."
)
@JSON
@click.pass_obj
def compare(client: HubClient, name: str, a: str, b: str, window: str, as_json: bool) -> None:
    """Compare versions A and B of NAME on the calls one answered live and the other in shadow."""
    data = client.get(f"/api/v1/models/{name}/compare", a=a, b=b, window=window)
    output.emit_json(data) if as_json else comparison(data)


def comparison(data: dict) -> None:
    sides = data["sides"]
    head = f"{data['model']} {sides[0]['version']} vs {sides[1]['version']}, last {data['window']}: "
    if not data["pairs"]:
        click.echo(head + "no calls on the same inputs yet. Start a shadow with 'aid shadow NAME VERSION'.")
        return
    click.echo(head + f"{data['pairs']} calls on the same inputs")
    rows = [
        ["answered live / in shadow", *(f"{s['calls'] - s['shadow']} / {s['shadow']}" for s in sides)],
        ["errors", *(s["errors"] for s in sides)],
        ["latency p50", *(_ms(s["latency_ms"]["p50"]) for s in sides)],
        ["latency mean", *(_ms(s["latency_ms"]["mean"]) for s in sides)],
        ["accuracy (feedback)", *(f"{_percent(s['accuracy'])} of {s['feedback']}" for s in sides)],
    ]
    output.table(rows, ["", *(s["version"] for s in sides)])
    click.echo(f"agreement (labels): {_percent(data['agreement'])} of {data['compared_labels']} calls")
    difference = "—" if data["mean_abs_diff"] is None else f"{data['mean_abs_diff']:.6g}"
    click.echo(f"mean absolute difference (numbers): {difference} over {data['compared_numbers']} values")


def _ms(value: float | None) -> str:
    return "—" if value is None else f"{value:.1f} ms"


def _percent(value: float | None) -> str:
    return "—" if value is None else f"{value:.1%}"
