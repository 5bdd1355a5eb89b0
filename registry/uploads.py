"""Blobs uploaded in parts: appended at an offset, resumable after any interruption, checked against
their sha256 when complete, then moved into the blob store.

A part file `uploads/<sha256>` grows as parts arrive; its size is where the next part starts. A blob
completed but not yet taken by a version leaves a marker `uploads/<sha256>.done`, so that blobs no
version took are deleted after a while (`remove_stale`).

A part that finds the disk full is cut off: the part file is truncated back to the size it had before
(DiskFull says how many bytes that is), so the space is free again and the same part can be sent again."""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import os
import time
from collections.abc import Callable, Iterable, Iterator
from pathlib import Path
from typing import BinaryIO

from registry.blobs import CHUNK, DISK_FULL, BlobStore, DiskFull
from registry.errors import RegistryError


class UploadBusy(RegistryError):
    """Another client is sending parts of the same blob right now."""


class OffsetMismatch(RegistryError):
    def __init__(self, sha256: str, offset: int, expected: int):
        super().__init__(
            f"Blob {sha256[:12]}: a part at byte {offset} was sent, but the hub holds {expected} bytes "
            f"of it; send from byte {expected} (ask POST /api/v1/blobs/missing)."
        )
        self.expected = expected


class BlobCorrupt(RegistryError):
    """The bytes received do not hash to the blob's name; they were deleted."""


class PartInvalid(RegistryError):
    pass


class Uploads:
    def __init__(self, blobs: BlobStore, pause: Callable[[], None] = lambda: time.sleep(0)):
        self.blobs = blobs
        self.dir = blobs.root / "uploads"
        self.pause = pause  # between chunks of long loops: lets a gevent server serve other requests
        self._hashers: dict[str, tuple[int, hashlib._Hash]] = {}

    def offset(self, sha256: str) -> int:
        """Bytes of `sha256` received so far: its size when the blob is stored."""
        part = self.dir / sha256
        return part.stat().st_size if part.exists() else 0

    def append(self, sha256: str, size: int, offset: int, stream: BinaryIO, length: int) -> int:
        """Write the `length` bytes of `stream` at `offset` of the blob; return the bytes held now.
        The last part checks the whole blob's sha256 and stores it."""
        if self.blobs.has(sha256):
            return size
        if offset + length > size:
            raise PartInvalid(
                f"A part of {length} bytes at byte {offset} runs past the blob's size of {size} bytes."
            )
        with self._locked(sha256):
            held = self.offset(sha256)
            if offset != held:
                raise OffsetMismatch(sha256, offset, held)
            hasher = self._hasher(sha256, held)
            written = self._write(self.dir / sha256, held, stream, length, hasher)
            self._hashers[sha256] = (held + written, hasher)
            if held + written == size:
                self._finish(sha256, hasher)
            return held + written

    def _write(self, part: Path, held: int, stream: BinaryIO, length: int, hasher) -> int:
        """Append up to `length` bytes of `stream` to the part file of `held` bytes; return how many.
        The bytes are on disk (fsync) when it returns; a failed write leaves the file at `held`."""
        written = 0
        try:
            with _written(open, part, "ab", buffering=0) as out:  # unbuffered: close() writes nothing
                while written < length:
                    chunk = stream.read(min(CHUNK, length - written))
                    if not chunk:
                        break  # the client went away: what arrived stays, the next part resumes there
                    _write_all(out, chunk)
                    hasher.update(chunk)
                    written += len(chunk)
                _written(os.fsync, out.fileno())
        except _WriteFailed as e:
            _cut_back(part, held)
            if e.error.errno in DISK_FULL:
                raise DiskFull(self.blobs.root, e.error, held) from e.error
            raise e.error from None
        return written

    def _hasher(self, sha256: str, held: int):
        """The running hash of the bytes held; recomputed from the part file after a restart. Taken
        out of the cache while a part is written: a part that fails leaves none behind."""
        known = self._hashers.pop(sha256, None)
        if known and known[0] == held:
            return known[1]
        hasher = hashlib.sha256()
        if held:
            with open(self.dir / sha256, "rb") as f:
                while chunk := f.read(CHUNK):
                    hasher.update(chunk)
                    self.pause()
        return hasher

    def _finish(self, sha256: str, hasher) -> None:
        self._hashers.pop(sha256, None)
        part = self.dir / sha256
        if hasher.hexdigest() != sha256:
            part.unlink(missing_ok=True)
            raise BlobCorrupt(
                f"The bytes sent for blob {sha256[:12]} hash to {hasher.hexdigest()[:12]}; they were "
                "deleted. Send the file again; if it changed while uploading, hash it again first."
            )
        self.mark_uploaded([sha256])  # first: a blob is never without the marker that cleans it up
        try:
            self.blobs.adopt(part, sha256)
        except DiskFull as e:  # the whole part stays: a part of 0 bytes at its end stores it
            e.offset = self.offset(sha256)
            raise

    @contextlib.contextmanager
    def _locked(self, sha256: str) -> Iterator[None]:
        self.dir.mkdir(parents=True, exist_ok=True)
        fd = os.open(self.dir / f"{sha256}.lock", os.O_CREAT | os.O_RDWR, 0o600)
        try:
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError as e:
                raise UploadBusy(
                    f"Blob {sha256[:12]} is being uploaded by another client; try again in a moment."
                ) from e
            yield
        finally:
            os.close(fd)

    def mark_uploaded(self, digests: Iterable[str]) -> None:
        """Blobs stored for a version not yet recorded: deleted after a while unless one takes them."""
        self.dir.mkdir(parents=True, exist_ok=True)
        for sha256 in digests:
            (self.dir / f"{sha256}.done").touch()

    def taken(self, digests: Iterable[str]) -> None:
        """The blobs now belong to a version: they are no longer cleaned up."""
        for sha256 in digests:
            (self.dir / f"{sha256}.done").unlink(missing_ok=True)

    def remove_stale(self, older_than: float, in_use: Callable[[str], bool]) -> int:
        """Delete parts not added to, and blobs no version took, for `older_than` seconds; a blob
        `in_use` stays. Return how many were deleted."""
        if not self.dir.exists():
            return 0
        cutoff, removed = time.time() - older_than, 0
        for path in list(self.dir.iterdir()):
            with contextlib.suppress(FileNotFoundError):
                if path.suffix == ".lock" or path.stat().st_mtime >= cutoff:
                    continue
                sha256 = path.name.removesuffix(".done")
                if path.suffix == ".done" and not in_use(sha256):
                    self.blobs.path(sha256).unlink(missing_ok=True)
                path.unlink()
                (self.dir / f"{sha256}.lock").unlink(missing_ok=True)
                self._hashers.pop(sha256, None)
                removed += 1
        return removed


class _WriteFailed(Exception):
    """Writing to a part file failed with `error` (as opposed to reading the request)."""

    def __init__(self, error: OSError):
        self.error = error


def _written(call, *args, **kwargs):
    """`call(*args, **kwargs)`, its OSError raised as _WriteFailed."""
    try:
        return call(*args, **kwargs)
    except OSError as e:
        raise _WriteFailed(e) from e


def _write_all(out, data: bytes) -> None:
    """Write all of `data` to the unbuffered file `out` (a write may take only some of it)."""
    view = memoryview(data)
    while view:
        view = view[_written(out.write, view) :]


def _cut_back(part: Path, held: int) -> None:
    """Truncate the part file back to `held` bytes (none: deleted); shrinking a file needs no room."""
    if held:
        os.truncate(part, held)
    else:
        part.unlink(missing_ok=True)
