"""`aid publish`: hash the package's files, send the blobs the hub lacks in parts (resuming where an
interrupted upload stopped), then record the version from its file list (docs/storage.md).

Memory stays flat whatever the size of a file: hashing and sending read it 1 MiB at a time."""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO

import click

from cli.client import HubClient, HubReplyError
from cli.progress import Progress, human
from registry.files import FileEntry, list_package
from vocab.sizes import parse_size

PART_SIZE = 32 * 1024 * 1024
MAX_CONFLICTS = 30  # 409s in a row for one blob without the hub's offset moving
WAIT_S = 0.1  # before asking again after a 409 without Retry-After (a part at a stale offset)


class FileUnreadable(click.ClickException):
    """A file of the package cannot be read, or changed between hashing and sending it (exit 2)."""

    exit_code = 2


@dataclass(frozen=True)
class Blob:
    """A blob the hub lacks: the file it is read from, and where the hub's copy stopped."""

    entry: FileEntry
    file: Path
    offset: int


class PartReader:
    """The next `length` bytes of an open file, for the HTTP client to read (1 MiB at a time); every
    read moves the progress bar."""

    def __init__(self, file: BinaryIO, length: int, progress: Progress):
        self.file, self.left, self.progress, self.read_bytes = file, length, progress, 0

    def read(self, size: int = -1) -> bytes:
        if self.left <= 0:
            return b""
        data = self.file.read(self.left if size is None or size < 0 else min(size, self.left))
        if not data:
            raise FileUnreadable(
                f"{self.file.name} is shorter than when it was hashed: "
                "run 'aid publish' again once it is written"
            )
        self.left -= len(data)
        self.read_bytes += len(data)
        self.progress.advance(len(data))
        return data


def part_size_bytes(value: str) -> int:
    """The --part-size option (or AIDHUB_PART_SIZE) in bytes: 32Mi, 4Mi, 1048576."""
    try:
        size = parse_size(value)
    except ValueError as e:
        raise click.BadParameter(str(e)) from e
    if size <= 0:
        raise click.BadParameter("must be at least one byte, e.g. 32Mi")
    return size


def publish_files(client: HubClient, root: Path, part_size: int = PART_SIZE, echo=click.echo) -> dict:
    """Upload what the hub lacks of the package in `root`, then publish it; the hub's reply."""
    entries = hash_package(root, echo)
    blobs = missing(client, entries, root, echo)
    if blobs:
        progress = Progress(sum(b.entry.size for b in blobs), done=sum(b.offset for b in blobs))
        for blob in blobs:
            send_blob(client, blob, part_size, progress)
        progress.close()
    return client.post("/api/v1/models", {"files": [e.to_dict() for e in entries]})


def hash_package(root: Path, echo: Callable[[str], None]) -> list[FileEntry]:
    started = time.monotonic()
    try:
        entries = list_package(root)
    except OSError as e:
        raise FileUnreadable(f"Cannot read {e.filename or root}: {e.strerror}") from e
    total = sum(e.size for e in entries)
    echo(f"Hashed {len(entries)} files ({human(total)}) in {time.monotonic() - started:.1f} s")
    return entries


def missing(client: HubClient, entries: list[FileEntry], root: Path, echo) -> list[Blob]:
    """Ask the hub which blobs it lacks; say what will be sent; the blobs to send."""
    unique = {e.sha256: e for e in entries}
    try:
        reply = client.missing_blobs([{"sha256": e.sha256, "size": e.size} for e in unique.values()])
    except HubReplyError as e:
        raise with_paths(e, entries) from e
    entry = [unique[m["sha256"]] for m in reply["missing"]]
    blobs = [Blob(e, root / e.path, m["offset"]) for e, m in zip(entry, reply["missing"], strict=True)]
    lacking = {b.entry.sha256 for b in blobs}
    files = [e for e in entries if e.sha256 in lacking]
    present = reply.get("present_bytes", 0)
    if not blobs:
        total = human(sum(e.size for e in entries))
        echo(f"All {len(entries)} files ({total}) already on the hub (deduplicated)")
        return []
    to_send = sum(b.entry.size - b.offset for b in blobs)
    had = f"; {human(present)} already on the hub (deduplicated)" if present else ""
    echo(f"Uploading {len(files)} of {len(entries)} files ({human(to_send)}){had}")
    for blob in blobs:
        if blob.offset:
            echo(f"Resuming {blob.entry.path} at {human(blob.offset)}")
    return blobs


def with_paths(error: HubReplyError, entries: list[FileEntry]) -> HubReplyError:
    """The hub's error with the blobs it names (`blob 1a2b3c4d5e6f`) replaced by their files' paths."""
    message, errors = str(error), list(error.errors)
    for e in entries:
        message = message.replace(f"blob {e.sha256[:12]}", e.path)
        errors = [line.replace(f"blob {e.sha256[:12]}", e.path) for line in errors]
    return HubReplyError(error.status, {"error": message, "errors": errors}, error.retry_after)


def send_blob(client: HubClient, blob: Blob, part_size: int, progress: Progress) -> None:
    """Send the blob in parts from the hub's offset; after a 409, ask where it stands and go on from
    there (waiting as the hub says while another client sends it)."""
    sha, size = blob.entry.sha256, blob.entry.size
    offset, conflicts = blob.offset, 0
    with readable(blob.file) as f:
        while True:
            length = min(part_size, size - offset)
            f.seek(offset)
            reader = PartReader(f, length, progress)
            try:
                held = client.send_part(sha, size, offset, reader, length)["offset"]
            except HubReplyError as e:
                if e.status != 409:
                    raise
                held = after_conflict(client, e, sha, size)
                conflicts = 0 if held is None or held > offset else conflicts + 1
                if conflicts > MAX_CONFLICTS:
                    raise
            progress.advance((size if held is None else held) - offset - reader.read_bytes)
            if held is None or held >= size:
                return
            offset = held


@contextmanager
def readable(path: Path) -> Iterator[BinaryIO]:
    try:
        f = open(path, "rb")
    except OSError as e:
        raise FileUnreadable(f"Cannot read {path}: {e.strerror}") from e
    with f:
        yield f


def after_conflict(client: HubClient, error: HubReplyError, sha256: str, size: int) -> int | None:
    """Wait as long as the hub asked (a client is sending this blob now), then ask where it stands."""
    time.sleep(WAIT_S if error.retry_after is None else min(error.retry_after, 60.0))
    return where(client, sha256, size)


def where(client: HubClient, sha256: str, size: int) -> int | None:
    """The bytes of the blob the hub holds, or None when it has the whole blob."""
    for blob in client.missing_blobs([{"sha256": sha256, "size": size}])["missing"]:
        if blob["sha256"] == sha256:
            return blob["offset"]
    return None


def published_line(reply: dict) -> str:
    """`Published NAME@VERSION sha256:<12 hex> (<size> bytes), <new> new, <dedup> deduplicated`."""
    what = "Published" if reply["created"] else "Already published (same digest)"
    line = f"{what} {reply['model']}@{reply['version']} sha256:{reply['digest'][:12]} ({reply['size']} bytes)"
    if "new_bytes" in reply:
        line += f", {human(reply['new_bytes'])} new, {human(reply.get('deduplicated_bytes', 0))} deduplicated"
    return line
