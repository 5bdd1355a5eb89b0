"""`aid alias | promote | rollback`: where a model's aliases send calls, through the hub's API.

`aid alias iris production 1.0.0=90,1.1.0=10` splits production's calls (a canary); the text goes
to the hub as written, which parses it (vocab/weights.py). Weights the hub refuses (not adding up to
100, a version that does not serve: HTTP 422) exit 2 with its message; the alias is unchanged."""

from __future__ import annotations

import click

from cli.client import HubClient

ALIAS_OPTION = click.option(
    "--alias", "alias_name", default="production", show_default=True, help="The alias to change."
)


def pointed(name: str, reply: dict) -> str:
    """'iris@production -> 1.1.0', or '-> 1.0.0=90,1.1.0=10' for a split alias."""
    weights = reply.get("weights")
    target = ",".join(f"{v}={w}" for v, w in weights.items()) if weights else reply["version"]
    return f"{name}@{reply['alias']} -> {target}"


def moved_or_follow(client: HubClient, name: str, reply: dict) -> None:
    """Print where the alias points; when it waits for a build of its new version, follow the build."""
    if not reply["moved"]:
        from cli.main import follow_build  # cli.main imports this module

        build = reply["build"]
        click.echo(
            f"{name}@{reply['alias']} moves to {reply['version']} when it is ready (build {build['id']}) ..."
        )
        follow_build(client, build["id"])
        reply = {**reply, "weights": None}
    click.echo(pointed(name, reply))


@click.command()
@click.argument("name")
@click.argument("alias", required=False)
@click.argument("version", required=False)
@click.option("--retire", is_flag=True, help="Then stop the version the alias leaves, once drained.")
@click.pass_obj
def alias(client: HubClient, name: str, alias: str | None, version: str | None, retire: bool) -> None:
    """Point ALIAS (e.g. production) of model NAME at VERSION, or split its calls by weight:
    VERSION=PERCENT,... adding up to 100 (1.0.0=90,1.1.0=10), each version serving. With NAME alone,
    show where its aliases point and their latest changes (who moved which, from what to what).

    When the alias's version serves and VERSION does not, VERSION is deployed first and the alias
    moves once it is ready; this waits for that."""
    if alias is None:
        show_aliases(client.get(f"/api/v1/models/{name}/aliases"))
        return
    if version is None:
        raise click.UsageError(
            f"Say where {alias} points: aid alias {name} {alias} VERSION (or 1.0.0=90,1.1.0=10)."
        )
    reply = client.put(f"/api/v1/models/{name}/aliases/{alias}", {"version": version, "retire": retire})
    moved_or_follow(client, name, reply)


def show_aliases(data: dict) -> None:
    """One line per alias ('production -> 1.0.0'), then the latest changes, one a line:
    '  2026-12-02T10:00:00Z  production  1.0.0=90,1.1.0=10 -> 1.0.0  (alert rule #3)'."""
    weights = data["weights"]
    for name, number in data["aliases"].items():
        target = ",".join(f"{v}={w}" for v, w in weights[name].items()) if name in weights else number
        click.echo(f"{name} -> {target}")
    if data["changes"]:
        click.echo("\nlatest changes")
    for c in data["changes"][:20]:
        click.echo(f"  {c['at']}  {c['alias']}  {c['before'] or '(new)'} -> {c['after']}  ({c['by']})")


@click.command()
@click.argument("name")
@click.argument("version")
@ALIAS_OPTION
@click.pass_obj
def promote(client: HubClient, name: str, version: str, alias_name: str) -> None:
    """Send every call through the alias (production) of NAME to VERSION; 'aid rollback' undoes it."""
    reply = client.post(f"/api/v1/models/{name}/aliases/{alias_name}/promote", {"version": version})
    moved_or_follow(client, name, reply)


@click.command()
@click.argument("name")
@ALIAS_OPTION
@click.pass_obj
def rollback(client: HubClient, name: str, alias_name: str) -> None:
    """Put the alias (production) of NAME back as it was before its last change."""
    reply = client.post(f"/api/v1/models/{name}/aliases/{alias_name}/rollback")
    click.echo(pointed(name, reply))
