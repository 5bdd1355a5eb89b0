"""`aid dataset export | pull | list`: snapshots of a model's logged predictions with their feedback.

`export` asks the hub for a snapshot (content-addressed, immutable) and downloads it; `pull DIGEST`
downloads one again, as stored, or with `--reference` as a reference-data CSV (its input columns only)
that a package names in aid.yaml (`reference_data: reference.csv`). Every file is written to
`<file>.part`, hashed while it comes, and renamed into place only when its sha256 is the snapshot's."""

from __future__ import annotations

import hashlib
import os
from pathlib import Path

import click

from cli import output
from cli.client import HubClient
from vocab.datasets import FORMATS
from vocab.names import split_ref

CHUNK = 1024 * 1024
FILE = click.Path(dir_okay=False, path_type=Path)


class DatasetFailed(click.ClickException):
    exit_code = 1


@click.group()
def dataset() -> None:
    """Snapshots of a model's predictions, outputs and feedback: export, pull, list."""


@dataset.command()
@click.argument("ref")
@click.option("--since", help="Only predictions from this long ago on, e.g. 24h or 7d (default: all).")
@click.option("--labelled-only", is_flag=True, help="Only predictions with a feedback label.")
@click.option("--format", "fmt", type=click.Choice(FORMATS), default="parquet", show_default=True)
@click.option(
    "-o", "--output", "out", type=FILE, help="Where to write it (default: ./NAME-VERSION-DIGEST.EXT)."
)
@click.pass_obj
def export(client: HubClient, ref: str, since, labelled_only: bool, fmt: str, out: Path | None) -> None:
    """Snapshot the predictions of NAME[@VERSION] and download the file."""
    name, version = split_ref(ref)
    body = {"since": since, "labelled_only": labelled_only, "format": fmt}
    snapshot = client.post(f"/api/v1/models/{name}/datasets", body, version=version)
    target = download(client, snapshot["url"], out)
    click.echo(f"{said(snapshot)} -> {target}")
    click.echo(f"Pull it again with 'aid dataset pull {snapshot['digest']}'.")


@dataset.command()
@click.argument("digest")
@click.option("--reference", is_flag=True, help="Write its input columns as a reference-data CSV.")
@click.option("-o", "--output", "out", type=FILE, help="Where to write it (default: its file name).")
@click.pass_obj
def pull(client: HubClient, digest: str, reference: bool, out: Path | None) -> None:
    """Download the snapshot DIGEST (sha256:..., or its first 8+ digits)."""
    url = f"/api/v1/datasets/{digest.strip()}" + ("/reference.csv" if reference else "")
    target = download(client, url, out)
    if reference:
        click.echo(
            f"Wrote the inputs of {digest} to {target}; name it in aid.yaml: reference_data: {target.name}"
        )
    else:
        click.echo(f"Pulled {digest} -> {target}")


@dataset.command(name="list")
@click.argument("name")
@click.option("--json", "as_json", is_flag=True, help="Print the reply as JSON.")
@click.pass_obj
def list_snapshots(client: HubClient, name: str, as_json: bool) -> None:
    """List the snapshots of model NAME, newest first."""
    data = client.get(f"/api/v1/models/{split_ref(name)[0]}/datasets")
    if as_json:
        output.emit_json(data)
        return
    if not data["datasets"]:
        click.echo(f"{data['model']} has no dataset snapshots. Make one: aid dataset export {data['model']}")
        return
    rows = [[s["digest"][:19], s["version"], s["format"], s["rows"], s["labels"], filter_text(s["filter"]),
             s["created_at"]] for s in data["datasets"]]  # fmt: skip
    output.table(rows, ["DIGEST", "VERSION", "FORMAT", "ROWS", "LABELS", "FILTER", "CREATED"])


def filter_text(filter_: dict) -> str:
    """{'since': '7d', 'labelled_only': True} -> 'since 7d, labelled only'."""
    parts = [] if filter_.get("since") in (None, "all") else [f"since {filter_['since']}"]
    return ", ".join(parts + (["labelled only"] if filter_.get("labelled_only") else [])) or "all"


def said(snapshot: dict) -> str:
    return (
        f"Snapshot {snapshot['digest']} of {snapshot['model']}@{snapshot['version']}: "
        f"{snapshot['rows']:,} rows, {snapshot['labels']:,} labelled ({snapshot['format']})"
    )


def download(client: HubClient, url: str, out: Path | None) -> Path:
    """Stream `url` into `out` (default: the name the hub gives it) through `<file>.part`, checking the
    sha256 the hub sends (X-Checksum-Sha256) when it sends one; the file written."""
    reply = client.download(url)
    try:
        given = reply.headers.get("Content-Disposition", "").rpartition("filename=")[2].strip('"')
        target = out or Path(Path(given or "dataset").name)
        sha = _write(reply, target.with_name(target.name + ".part"))
    finally:
        reply.release_conn()
    expected = reply.headers.get("X-Checksum-Sha256")
    if expected and sha != expected:
        target.with_name(target.name + ".part").unlink(missing_ok=True)
        raise DatasetFailed(f"The file sent for sha256:{expected} hashes to sha256:{sha}; pull it again.")
    os.replace(target.with_name(target.name + ".part"), target)
    return target


def _write(reply, part: Path) -> str:
    sha = hashlib.sha256()
    try:
        with part.open("wb") as f:
            for chunk in reply.stream(CHUNK):
                sha.update(chunk)
                f.write(chunk)
    except OSError as e:
        raise DatasetFailed(f"Cannot write {e.filename or part}: {e.strerror}") from e
    return sha.hexdigest()
