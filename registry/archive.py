"""A package sent as one .tar.gz (curl, older CLIs, versions stored before files were): read as a
stream, each member stored as a blob, nothing unpacked on disk or held in memory."""

from __future__ import annotations

import tarfile
import zlib
from pathlib import PurePosixPath
from typing import BinaryIO

from registry.blobs import BlobStore
from registry.files import FileEntry, LimitExceeded, Limits, parse_entries
from registry.manifest import PackageInvalid, Problem


def store_archive(
    stream: BinaryIO, blobs: BlobStore, limits: Limits, entries: list[FileEntry] | None = None
) -> list[FileEntry]:
    """Store every file of the archive read from `stream` as a blob; return the file list. Each
    file stored is appended to `entries` as it is, so a caller can delete them when a later one fails."""
    entries = [] if entries is None else entries
    total = 0
    try:
        with tarfile.open(fileobj=stream, mode="r|*") as tar:
            for member in tar:
                if problem := member_problem(member):
                    raise PackageInvalid([Problem("archive", problem)])
                if member.isdir():
                    continue
                path = member.name.removeprefix("./")
                if len(entries) == limits.max_files:
                    raise LimitExceeded("files", "The archive has more files", limits.max_files)
                limits.check_file(path, member.size)
                total += member.size
                limits.check_total(total)
                sha256, size = blobs.put_stream(tar.extractfile(member), limits.max_file)
                entries.append(FileEntry(path, sha256, size))
    except (tarfile.TarError, EOFError, zlib.error, OSError) as e:
        raise PackageInvalid([Problem("archive", f"cannot be unpacked: {e}")]) from e
    return parse_entries([e.to_dict() for e in entries])


def member_problem(member: tarfile.TarInfo) -> str | None:
    parts = PurePosixPath(member.name).parts
    if member.name.startswith("/") or ".." in parts or "\\" in member.name:
        return f"{member.name!r} points outside the package"
    if not (member.isfile() or member.isdir()):
        return f"{member.name!r} is a link or special file; packages hold plain files only"
    return None
