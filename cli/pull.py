"""`aid pull NAME[@VERSION]`: download a version's files into a folder, streamed 1 MiB at a time.

Each file is written to `<path>.part`, hashed while it is written, and renamed into place only when its
sha256 is the one the hub lists. A `.part` left by an interrupted pull is hashed and continued with a
range request; a file already there with the right digest is not downloaded again."""

from __future__ import annotations

import hashlib
import os
from dataclasses import dataclass
from pathlib import Path, PurePosixPath

import click

from cli.client import HubClient
from cli.progress import Progress, human
from registry.files import FileEntry, hash_file
from vocab.names import split_ref

CHUNK = 1024 * 1024


class PullFailed(click.ClickException):
    exit_code = 1


@dataclass(frozen=True)
class Download:
    entry: FileEntry
    target: Path
    have: int  # bytes of its .part already on disk

    @property
    def part(self) -> Path:
        return part_path(self.target)


def part_path(target: Path) -> Path:
    return target.with_name(target.name + ".part")


def pull_version(client: HubClient, ref: str, out: Path | None, echo=click.echo) -> Path:
    """Download every file of NAME[@VERSION] into `out` (default ./NAME-VERSION); the folder."""
    name, version = resolve(client, ref)
    base = f"/api/v1/models/{name}/versions/{version}/files"
    entries = listed_files(client.get(base))
    dest = Path(out) if out is not None else Path(f"{name}-{version}")
    targets = [(e, safe_target(dest, e.path)) for e in entries]
    try:
        downloads = plan(targets, echo)
        if downloads:
            progress = Progress(sum(d.entry.size for d in downloads), done=sum(d.have for d in downloads))
            for d in downloads:
                fetch(client, f"{base}/{d.entry.path}", d, progress)
            progress.close()
    except OSError as e:  # the folder: not writable, the disk full
        raise PullFailed(f"Cannot write {e.filename or dest}: {e.strerror}") from e
    total = sum(e.size for e in entries)
    echo(f"Pulled {name}@{version}: {len(entries)} files ({human(total)}) into {dest}")
    return dest


def resolve(client: HubClient, ref: str) -> tuple[str, str]:
    """(name, version number) of NAME[@VERSION or ALIAS]; without one, the version calls go to."""
    name, version = split_ref(ref)
    if not version:
        model = client.get(f"/api/v1/models/{name}")
        version = model.get("shown") or model.get("latest")
        if not version:
            raise PullFailed(f"{name} has no version to pull; publish one with 'aid publish DIR'.")
    row = client.get(f"/api/v1/models/{name}/versions/{version}")
    return name, row["version"]


def listed_files(reply: dict) -> list[FileEntry]:
    items = reply.get("files", reply.get("data"))
    try:
        return [FileEntry(str(f["path"]), str(f["sha256"]), int(f["size"])) for f in items]
    except (TypeError, KeyError, ValueError) as e:
        raise PullFailed(f"The hub's list of files is not what this aid reads ({e!r}).") from e


def safe_target(dest: Path, path: str) -> Path:
    """Where `path` goes inside `dest`; PullFailed for a path that would leave it."""
    parts = PurePosixPath(path).parts
    bad = (
        not path
        or path.startswith("/")
        or "\\" in path
        or "\0" in path
        or any(p in ("", ".", "..") for p in path.split("/"))
    )
    target = dest.joinpath(*parts) if parts and not bad else dest
    root = dest.resolve()
    if bad or not target.resolve().is_relative_to(root) or target.resolve() == root:
        raise PullFailed(f"The hub lists a file {path!r} outside the folder {dest}; nothing was downloaded.")
    return target


def plan(targets: list[tuple[FileEntry, Path]], echo) -> list[Download]:
    """The files to download: all but those already in place with the right digest."""
    downloads = []
    for entry, target in targets:
        if target.is_file() and target.stat().st_size == entry.size and hash_file(target)[0] == entry.sha256:
            continue
        have = part_path(target).stat().st_size if part_path(target).is_file() else 0
        downloads.append(Download(entry, target, have if have <= entry.size else 0))
    if not downloads:
        echo(f"All {len(targets)} files are already there with the right digest")
        return []
    size = sum(d.entry.size - d.have for d in downloads)
    echo(f"Downloading {len(downloads)} of {len(targets)} files ({human(size)})")
    for d in downloads:
        if d.have:
            echo(f"Resuming {d.entry.path} at {human(d.have)}")
    return downloads


def fetch(client: HubClient, path: str, d: Download, progress: Progress) -> None:
    """Download one file into its .part (continuing it), check its sha256, rename it into place."""
    d.target.parent.mkdir(parents=True, exist_ok=True)
    sha, have = hashlib.sha256(), d.have
    if have:
        have = hash_part(d.part, have, sha)
    if have < d.entry.size:
        have, sha = receive(client, path, d, have, sha, progress)
    elif not d.part.exists():
        d.part.touch()
    if have != d.entry.size:
        raise PullFailed(
            f"{d.entry.path}: the hub sent {have} of {d.entry.size} bytes; run 'aid pull' again to resume."
        )
    if sha.hexdigest() != d.entry.sha256:
        d.part.unlink(missing_ok=True)
        raise PullFailed(
            f"{d.entry.path}: the bytes received hash to sha256:{sha.hexdigest()[:12]}, not to "
            f"sha256:{d.entry.sha256[:12]} as the hub lists; the download was deleted. Pull again; if "
            "this repeats, the hub's copy of the file is damaged."
        )
    os.replace(d.part, d.target)


def hash_part(part: Path, have: int, sha) -> int:
    """Feed the first `have` bytes of a .part to `sha`; the bytes read."""
    read = 0
    with open(part, "rb") as f:
        while read < have and (chunk := f.read(min(CHUNK, have - read))):
            sha.update(chunk)
            read += len(chunk)
    return read


def receive(client: HubClient, path: str, d: Download, have: int, sha, progress: Progress):
    """Append the file's bytes from `have` on to its .part, hashing them; (bytes now held, hash)."""
    reply = client.download(path, start=have)
    try:
        if have and reply.status != 206:  # the hub sent the whole file: start over
            progress.advance(-have)
            have, sha = 0, hashlib.sha256()
        with open(d.part, "ab" if have else "wb") as out:
            out.truncate(have)
            for chunk in reply.stream(CHUNK):
                out.write(chunk)
                sha.update(chunk)
                have += len(chunk)
                progress.advance(len(chunk))
    except _broken() as e:
        raise PullFailed(f"{d.entry.path}: the download broke off ({e.__class__.__name__}) at {have} bytes; "
                         "run 'aid pull' again to resume.") from e  # fmt: skip
    finally:
        reply.release_conn()
    return have, sha


def _broken() -> tuple[type[Exception], ...]:
    import urllib3

    return (urllib3.exceptions.HTTPError,)
