"""Content-addressed blobs: streamed to a temp file while hashed, renamed into place, never overwritten.

A write that finds the disk full (ENOSPC, or EDQUOT for a quota) raises DiskFull; whatever it had
written is gone by then, and no blob appears under the digest."""

from __future__ import annotations

import contextlib
import errno
import hashlib
import os
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import BinaryIO

from registry.errors import RegistryError

CHUNK = 1024 * 1024
DISK_FULL = (errno.ENOSPC, errno.EDQUOT)


class DiskFull(RegistryError):
    """The disk under `folder` filled up while a blob was written; nothing of it was kept. `offset`:
    for a blob sent in parts, the bytes of it the hub still holds (where the next part starts)."""

    def __init__(self, folder: Path, error: OSError, offset: int | None = None):
        super().__init__(f"{folder}: {error.strerror}")
        self.folder, self.offset = Path(folder), offset


@contextlib.contextmanager
def disk_full_raised(folder: Path) -> Iterator[None]:
    """Raise an ENOSPC or EDQUOT inside the block as DiskFull(`folder`)."""
    try:
        yield
    except OSError as e:
        if e.errno in DISK_FULL:
            raise DiskFull(folder, e) from e
        raise


class BlobTooLarge(RegistryError):
    def __init__(self, limit: int):
        super().__init__(f"The upload is larger than the limit of {limit} bytes.")
        self.limit = limit


class BlobStore:
    def __init__(self, root: Path):
        self.root = Path(root)
        self.tmp = self.root / "tmp"

    def path(self, digest: str) -> Path:
        return self.root / "sha256" / digest[:2] / digest

    def has(self, digest: str) -> bool:
        return self.path(digest).is_file()

    def size(self, digest: str) -> int | None:
        try:
            return self.path(digest).stat().st_size
        except FileNotFoundError:
            return None

    def adopt(self, path: Path, digest: str) -> None:
        """Move a file already checked to hash to `digest` into the store. When that fails (DiskFull:
        no room for the blob's folder) the file stays where it is, to be adopted again."""
        with disk_full_raised(self.root):
            self._move_into_place(path, digest)
        path.unlink(missing_ok=True)

    def put_stream(
        self, stream: BinaryIO, max_bytes: int | None = None, created: set[str] | None = None
    ) -> tuple[str, int]:
        """Store everything `stream` yields; return (sha256 hex, size). Dedups by content; a blob
        that was not in the store before is added to `created`. DiskFull leaves no temp file."""
        with disk_full_raised(self.root):
            self.tmp.mkdir(parents=True, exist_ok=True)
            fd, tmp_name = tempfile.mkstemp(dir=self.tmp, prefix="upload-")
            try:
                digest, size = _copy_hashing(stream, os.fdopen(fd, "wb"), max_bytes)
                if self._move_into_place(Path(tmp_name), digest) and created is not None:
                    created.add(digest)
                return digest, size
            finally:
                Path(tmp_name).unlink(missing_ok=True)

    def _move_into_place(self, tmp: Path, digest: str) -> bool:
        """Link `tmp` in as the blob `digest`; False when the store held it already."""
        final = self.path(digest)
        final.parent.mkdir(parents=True, exist_ok=True)
        os.chmod(tmp, 0o444)
        try:
            os.link(tmp, final)  # atomic, and never replaces a blob that is already there
        except FileExistsError:
            return False
        return True

    def remove_stale_uploads(self) -> int:
        """Delete temp files left by an interrupted upload (a killed hub); return how many."""
        stale = list(self.tmp.glob("upload-*")) if self.tmp.exists() else []
        for path in stale:
            path.unlink(missing_ok=True)
        return len(stale)


def _copy_hashing(stream: BinaryIO, out: BinaryIO, max_bytes: int | None) -> tuple[str, int]:
    sha, size = hashlib.sha256(), 0
    with out:
        while chunk := stream.read(CHUNK):
            size += len(chunk)
            if max_bytes is not None and size > max_bytes:
                raise BlobTooLarge(max_bytes)
            sha.update(chunk)
            out.write(chunk)
        out.flush()
        os.fsync(out.fileno())
    return sha.hexdigest(), size
