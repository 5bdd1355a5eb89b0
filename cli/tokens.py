"""`aid login` and `aid token create | list | revoke`: API tokens, through the hub's API.

The CLI sends a token found, in this order: --token / AIDHUB_TOKEN; the one `aid login` stored for the
hub's URL (`~/.config/aidhub/tokens.json`, mode 0600); the admin token a hub on this machine wrote at
its first start (`$AIDHUB_HOME/admin-token`). Without one it calls as an anonymous user."""

from __future__ import annotations

import json
import os
from pathlib import Path

import click

from cli.client import HubClient


def stored_tokens_file() -> Path:
    base = Path(os.environ.get("XDG_CONFIG_HOME") or Path.home() / ".config")
    return base / "aidhub" / "tokens.json"


def find_token(url: str, given: str | None) -> str | None:
    """The token to send to the hub at `url` (see the module's docstring)."""
    if given:
        return given
    stored = _read_json(stored_tokens_file()).get(url.rstrip("/"))
    if stored:
        return stored
    home = Path(os.environ.get("AIDHUB_HOME") or "~/.aidhub").expanduser()
    admin = home / "admin-token"
    try:
        return admin.read_text().strip() or None
    except OSError:
        return None


def _read_json(path: Path) -> dict:
    try:
        data = json.loads(path.read_text())
    except (OSError, ValueError):
        return {}
    return data if isinstance(data, dict) else {}


def store_token(url: str, token: str) -> Path:
    """Keep `token` for the hub at `url`, in a file only this user can read."""
    path = stored_tokens_file()
    path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
    tokens = {**_read_json(path), url.rstrip("/"): token}
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as f:
        json.dump(tokens, f, indent=2)
    os.chmod(path, 0o600)
    return path


@click.command()
@click.option("--token", "token_text", prompt="Token", hide_input=True, help="An aid_... token.")
@click.pass_obj
def login(client: HubClient, token_text: str) -> None:
    """Check a token with the hub and keep it for the CLI's calls to that hub."""
    client.token = token_text.strip()
    me = client.get("/api/v1/whoami")
    if not me["owner"]:
        raise click.ClickException("The hub does not know this token.")
    path = store_token(client.url, client.token)
    click.echo(
        f"Signed in to {client.url} as {me['owner']} ({', '.join(me['scopes'])}); token kept in {path}"
    )


@click.group()
def token() -> None:
    """API tokens: create one (shown once), list yours, revoke one."""


@token.command()
@click.option("--scope", "scopes", multiple=True, required=True,
              help="read, predict, feedback, publish, deploy, admin; repeat or comma-separate.")  # fmt: skip
@click.option("--owner", help="Whose token it is (an admin may name anyone; default: you).")
@click.option("--expires", help="How long it lives, e.g. 30d or 12h (default: until revoked).")
@click.option("--note", help="What it is for.")
@click.pass_obj
def create(client: HubClient, scopes: tuple[str, ...], owner, expires, note) -> None:
    """Create a token. It is printed once: keep it."""
    names = [s.strip() for item in scopes for s in item.split(",") if s.strip()]
    fields = {"scopes": names, "owner": owner, "expires": expires, "note": note}
    made = client.post("/api/v1/tokens", {k: v for k, v in fields.items() if v})
    click.echo(made["token"])
    until = f", expires {made['expires_at']}" if made["expires_at"] else ""
    click.echo(f"Token {made['id']} of {made['owner']}: {', '.join(made['scopes'])}{until}. "
               "It is shown once; 'aid login' keeps it for the CLI.", err=True)  # fmt: skip


@token.command(name="list")
@click.pass_obj
def list_tokens(client: HubClient) -> None:
    """Your tokens (an admin sees all)."""
    rows = client.get("/api/v1/tokens")["tokens"]
    click.echo(f"{'ID':>4}  {'OWNER':<16} {'TOKEN':<15} {'SCOPES':<32} STATE")
    for t in rows:
        state = "revoked" if t["revoked"] else (f"expires {t['expires_at']}" if t["expires_at"] else "active")
        click.echo(f"{t['id']:>4}  {t['owner']:<16} {t['shown']:<15} {','.join(t['scopes']):<32} {state}")


@token.command()
@click.argument("token_id", type=int)
@click.pass_obj
def revoke(client: HubClient, token_id: int) -> None:
    """Revoke token TOKEN_ID: calls with it are refused from now on."""
    gone = client.request("DELETE", f"/api/v1/tokens/{token_id}")
    click.echo(f"Token {gone['id']} of {gone['owner']} revoked.")
