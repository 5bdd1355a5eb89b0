"""`aid alert add | list | rm`: a model's alert rules, through the hub's API.

A rule the hub refuses (an unknown metric, a malformed condition: HTTP 422) exits 2 with the hub's
message, which names the bad part; an unreachable hub exits 1 (cli/main.py)."""

from __future__ import annotations

import click

from cli import output
from cli.client import HubClient

CONDITION_HELP = (
    "METRIC OP NUMBER, e.g. 'accuracy_low < 0.8', 'error_rate > 5%', 'p95_ms > 250', or 'no traffic for "
    "10m'. Metrics: accuracy, accuracy_low (Wilson 95% lower bound), error_rate, p95_ms, drift_share, "
    "requests; operators < <= > >=. A canary of a split alias against its base: 'canary_error_rate > base + "
    "2%', 'canary_p95_ms > base + 50', 'canary_accuracy < base - 5%' (judged once each has 20 calls, 20 "
    "judged feedback for accuracy)."
)


@click.group()
def alert() -> None:
    """Alert rules of a model: when a metric crosses a threshold, fire and POST to a webhook."""


@alert.command()
@click.argument("name")
@click.option("--when", required=True, help=CONDITION_HELP)
@click.option("--for", "for_", help="How long it must hold before it fires, e.g. 10m (default: at once).")
@click.option("--window", help="What its metric is read over, e.g. 30m (default 1h).")
@click.option("--webhook", help="A URL that gets a JSON POST when the rule fires and when it resolves.")
@click.option("--secret", help="Sign each POST: X-Aidhub-Signature: sha256=HMAC-SHA256(secret, body).")
@click.option(
    "--action",
    help="rollback: when a canary rule fires, send every call of its alias back to the base (aid rollback).",
)
@click.pass_obj
def add(client: HubClient, name: str, when: str, for_, window, webhook, secret, action) -> None:
    """Add a rule to model NAME."""
    fields = {
        "when": when,
        "for": for_,
        "window": window,
        "webhook": webhook,
        "secret": secret,
        "action": action,
    }
    body = {k: v for k, v in fields.items() if v is not None}
    rule = client.post(f"/api/v1/models/{name}/alerts", body)
    click.echo(f"Rule {rule['id']} of {name}: {_said(rule)}")


def _said(rule: dict) -> str:
    """'accuracy_low < 0.8 for 10m over 1h, POST to URL (signed)'."""
    text = rule["condition"] + (f" for {rule['for']}" if rule["for"] != "0" else "")
    text += "" if rule["condition"].startswith("no traffic") else f" over {rule['window']}"
    signed = " (signed)" if rule["signed"] else ""
    text += f", POST to {rule['webhook']}{signed}" if rule["webhook"] else ""
    return text + (", then roll the alias back to its base" if rule.get("action") == "rollback" else "")


@alert.command(name="list")
@click.argument("name")
@click.option("--json", "as_json", is_flag=True, help="Print the reply as JSON.")
@click.pass_obj
def list_rules(client: HubClient, name: str, as_json: bool) -> None:
    """List the rules of model NAME with their states, and the latest changes."""
    data = client.get(f"/api/v1/models/{name}/alerts")
    if as_json:
        output.emit_json(data)
        return
    if not data["rules"]:
        click.echo(f"{name} has no alert rules. Add one: aid alert add {name} --when 'accuracy_low < 0.8'")
        return
    click.echo(f"{name}: {len(data['rules'])} rules, {data['firing']} firing\n")
    columns = ["ID", "CONDITION", "FOR", "WINDOW", "STATE", "WEBHOOK", "ACTION"]
    output.table([_row(r) for r in data["rules"]], columns)
    if data["history"]:
        click.echo("\nlatest changes")
        for e in data["history"][:10]:
            click.echo(f"  {_change(e)}")


def _row(rule: dict) -> list:
    idle = "ok (no canary)" if rule["condition"].startswith("canary_") else "ok (no version serves)"
    states = ", ".join(f"{v['version']} {v['state']}" for v in rule["versions"]) or idle
    hook = (rule["webhook"] or "-") + (" (signed)" if rule["signed"] else "")
    return [
        rule["id"],
        rule["condition"],
        rule["for"],
        rule["window"],
        states,
        hook,
        rule.get("action") or "-",
    ]


def _change(e: dict) -> str:
    value = "" if e["value"] is None else f" at {e['value']:g}"
    tries = len(e["attempts"])
    sent = (
        "" if e["delivery"] == "none" else f", webhook {e['delivery']} ({tries} attempt{'s' * (tries != 1)})"
    )
    change = f"{e['version']}: {e['previous']} -> {e['state']}"
    did = f"; {e['outcome']}" if e.get("outcome") else ""
    return f"{e['at']}  #{e['rule']} {e['condition']}  {change}{value}{sent}{did}"


@alert.command(name="rm")
@click.argument("name")
@click.argument("rule_id", type=int)
@click.pass_obj
def remove(client: HubClient, name: str, rule_id: int) -> None:
    """Remove rule RULE_ID of model NAME (its history stays)."""
    client.request("DELETE", f"/api/v1/models/{name}/alerts/{rule_id}")
    click.echo(f"Removed rule {rule_id} of {name}.")
