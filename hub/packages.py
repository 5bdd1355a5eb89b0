"""Package files on the hub: blobs uploaded in parts, the limits and the disk check, each version's
folder laid out by hard links, storage figures, and listing versions stored as one archive."""

from __future__ import annotations

import contextlib
import logging
import shutil
from collections.abc import Iterator
from pathlib import Path
from typing import BinaryIO

from peewee import IntegrityError

from database.connection import database
from hub.errors import InsufficientStorage, Invalid, translated
from registry.archive import store_archive
from registry.blobs import DISK_FULL, BlobStore, DiskFull
from registry.files import SHA256_RE, FileEntry, Limits, lay_out, list_package, manifest_digest
from registry.models import FileRow, VersionRow
from registry.uploads import Uploads

log = logging.getLogger(__name__)


class Packages:
    def __init__(self, blobs: BlobStore, packages_dir: Path, limits: Limits, min_free: int):
        self.blobs = blobs
        self.uploads = Uploads(blobs)
        self.packages_dir = Path(packages_dir)
        self.limits = limits
        self.min_free = min_free

    # --- uploads ------------------------------------------------------------------------

    def missing(self, items: object) -> dict:
        """Which of the blobs (`[{"sha256", "size"}]`) the hub lacks, with the bytes of each it holds."""
        wanted = _blob_list(items)
        with translated():
            self.limits.check([FileEntry(f"blob {sha[:12]}", sha, size) for sha, size in wanted.items()])
        missing = [
            {"sha256": sha, "size": size, "offset": min(self.uploads.offset(sha), size)}
            for sha, size in wanted.items()
            if not self.blobs.has(sha)
        ]
        self.check_disk(sum(m["size"] - m["offset"] for m in missing))
        present = {sha: size for sha, size in wanted.items() if self.blobs.has(sha)}
        return {"missing": missing, "present": len(present), "present_bytes": sum(present.values())}

    def upload_part(
        self, sha256: str, offset: object, size: object, stream: BinaryIO, length: int | None
    ) -> dict:
        """Append one part of a blob; the last part checks and stores it."""
        sha256, offset, size = _part_args(sha256, offset, size)
        if length is None:
            raise Invalid("Send the part with a Content-Length header.")
        with translated():
            self.limits.check_file(f"blob {sha256[:12]}", size)
        self.check_disk(length)
        with translated(), self._room(length):
            held = self.uploads.append(sha256, size, offset, stream, length)
        return {"sha256": sha256, "size": size, "offset": held, "complete": held == size}

    def check_disk(self, need: int) -> None:
        """507 when storing `need` more bytes would leave less than AIDHUB_MIN_FREE_DISK free."""
        if need and _free(self.blobs.root) - need < self.min_free:
            free = _free(self.blobs.root)
            raise InsufficientStorage(
                f"The hub's disk has {free:,} bytes free; this upload needs {need:,} more and must leave "
                f"AIDHUB_MIN_FREE_DISK={self.min_free:,} bytes free. Free space on the hub's disk "
                f"({self.blobs.root}), or lower AIDHUB_MIN_FREE_DISK."
            )

    @contextlib.contextmanager
    def _room(self, need: int | None, packages: bool = False) -> Iterator[None]:
        """A disk that fills up inside the block (ENOSPC, EDQUOT: another writer took the space, or
        AIDHUB_MIN_FREE_DISK let it) is a 507 naming the folder: the blob store's, or with `packages`
        the package folders' (laid out by copies when the two are on different disks)."""
        try:
            yield
        except DiskFull as e:
            raise self._filled(need, e.folder, e.offset) from e
        except OSError as e:
            if e.errno not in DISK_FULL:
                raise
            if not packages:
                raise self._filled(need, self.blobs.root, None) from e
            folder = self.packages_dir
            raise InsufficientStorage(
                f"The hub's disk is full: {folder} has {_free(folder):,} bytes free, too few to lay out "
                f"the package's {need:,} bytes there (copied from the blob store, on another disk). "
                "Free space on that disk, then try again."
            ) from e

    def _filled(self, need: int | None, folder: Path, offset: int | None) -> InsufficientStorage:
        free = _free(folder)  # measured after what the failed write had taken was given back
        of = f" of {need:,} bytes" if need else ""
        kept = "Nothing of it was kept"
        if offset is not None:
            kept = f"Nothing of this part was kept: the hub holds the first {offset:,} bytes of the file"
        return InsufficientStorage(
            f"The hub's disk is full: {folder} has {free:,} bytes free, too few for this upload{of}. "
            f"{kept}. Free space on that disk (or give the hub's home a larger one), then send it "
            f"again ('aid publish' resumes where it stopped). AIDHUB_MIN_FREE_DISK (now "
            f"{self.min_free:,} bytes) makes the hub refuse uploads that would fill it before they start."
        )

    def store_archive(self, stream: BinaryIO, length: int | None) -> list[FileEntry]:
        """The files of a .tar.gz streamed in, each stored as a blob. When it fails, the blobs it
        added are deleted again (blobs the store held before stay)."""
        self.check_disk(length or 0)
        with translated(), self._room(length):
            entries = self._archive_or_nothing(stream)
        self.uploads.mark_uploaded(e.sha256 for e in entries)
        return entries

    def _archive_or_nothing(self, stream: BinaryIO) -> list[FileEntry]:
        stored: list[FileEntry] = []
        created: set[str] = set()
        try:
            return store_archive(stream, self.blobs, self.limits, stored, created)
        except Exception:
            self.forget([e for e in stored if e.sha256 in created])
            raise

    # --- versions' folders ----------------------------------------------------------------

    def lay_out(self, entries: list[FileEntry]) -> tuple[Path, str]:
        """(the package folder, the digest) of a file list whose blobs are all stored."""
        with translated():
            self.limits.check(entries)
        absent = [e.path for e in entries if self.blobs.size(e.sha256) != e.size]
        if absent:
            raise Invalid(
                f"{len(absent)} of the package's files are not on the hub: upload them first "
                "(PATCH /api/v1/blobs/<sha256>), as 'aid publish' does.",
                absent[:20],
            )
        digest = manifest_digest(entries)
        return self._folder(digest, entries), digest

    def folder(self, version: VersionRow) -> Path:
        """The version's package folder, laid out again from its blobs when it is gone."""
        return self._folder(version.digest, files_of(version))

    def _folder(self, digest: str, entries: list[FileEntry]) -> Path:
        dest = self.packages_dir / digest
        if not dest.is_dir():
            with self._room(sum(e.size for e in entries), packages=True):
                lay_out(entries, self.blobs.path, dest)  # copies where links cannot be made
        return dest

    def discard(self, digest: str) -> None:
        """Forget the folder of a rejected package, unless a version holds it (its blobs stay until
        the upload TTL)."""
        if not VersionRow.select().where(VersionRow.digest == digest).exists():
            shutil.rmtree(self.packages_dir / digest, ignore_errors=True)

    def forget(self, entries: list[FileEntry]) -> None:
        """Delete the blobs of `entries` that no version holds."""
        held = self._held(e.sha256 for e in entries)
        for e in entries:
            if e.sha256 not in held:
                self.blobs.path(e.sha256).unlink(missing_ok=True)
        self.uploads.taken(e.sha256 for e in entries)

    def _held(self, digests) -> set[str]:
        """Those of `digests` that some version holds."""
        query = FileRow.select(FileRow.sha256).where(FileRow.sha256.in_(list(set(digests))))
        return {r.sha256 for r in query.distinct()}

    def new_bytes(self, entries: list[FileEntry]) -> int:
        """Bytes of the blobs in `entries` that no version holds yet."""
        sizes = {e.sha256: e.size for e in entries}
        held = self._held(sizes)
        return sum(size for sha, size in sizes.items() if sha not in held)

    def storage(self) -> dict:
        """Blobs the versions hold, the bytes they take, and the bytes their files add up to."""
        cursor = database.execute_sql(
            "SELECT COUNT(*), COALESCE(SUM(size), 0) FROM (SELECT DISTINCT sha256, size FROM version_files) b"
        )
        blobs, stored = cursor.fetchone()
        logical = database.execute_sql("SELECT COALESCE(SUM(size), 0) FROM version_files").fetchone()[0]
        return {
            "blobs": blobs,
            "stored_bytes": int(stored),
            "logical_bytes": int(logical),
            "deduplicated_bytes": int(logical) - int(stored),
        }

    def remove_stale_uploads(self, older_than: float) -> int:
        in_use = lambda sha: FileRow.select().where(FileRow.sha256 == sha).exists()  # noqa: E731
        return self.uploads.remove_stale(older_than, in_use)

    # --- versions stored as one archive ---------------------------------------------------

    def list_archived_versions(self) -> int:
        """Give versions published as one archive their file list (their digest stays the archive's);
        return how many were listed."""
        listed = 0
        for version in VersionRow.select().where(~VersionRow.id.in_(FileRow.select(FileRow.version))):
            entries = self._archived_files(version)
            if entries is None:
                name = f"{version.model.name}@{version.version}"
                log.warning("%s: neither its archive nor its folder is on disk", name)
                continue
            try:
                with database.atomic():
                    FileRow.insert_many([{"version": version, **e.to_dict()} for e in entries]).execute()
            except IntegrityError:  # another hub process (aid worker) listed it at the same time
                continue
            listed += 1
        return listed

    def _archived_files(self, version: VersionRow) -> list[FileEntry] | None:
        unlimited = Limits(max_file=2**62, max_version=2**62, max_files=2**31, max_ratio=0)
        if self.blobs.has(version.digest):
            with open(self.blobs.path(version.digest), "rb") as f, translated():
                return store_archive(f, self.blobs, unlimited)
        folder = self.packages_dir / version.digest
        if folder.is_dir():
            entries = list_package(folder)
            for e in entries:
                with open(folder / e.path, "rb") as f:
                    self.blobs.put_stream(f)
            return entries
        return None


def _free(folder: Path) -> int:
    """Free bytes on the disk of `folder`, or of its nearest parent that exists."""
    folder = Path(folder)
    while not folder.exists() and folder != folder.parent:
        folder = folder.parent
    return shutil.disk_usage(folder).free


def files_of(version: VersionRow) -> list[FileEntry]:
    rows = FileRow.select().where(FileRow.version == version).order_by(FileRow.path)
    return [FileEntry(r.path, r.sha256, r.size) for r in rows]


def _blob_list(items: object) -> dict[str, int]:
    if not isinstance(items, list):
        raise Invalid('Send {"blobs": [{"sha256": "<64 hex>", "size": <bytes>}, ...]}.')
    wanted = {}
    for i, item in enumerate(items):
        sha, size = (item.get("sha256"), item.get("size")) if isinstance(item, dict) else (None, None)
        if not (isinstance(sha, str) and SHA256_RE.fullmatch(sha)) or not _is_size(size):
            shape = '{"sha256": "<64 hex>", "size": <bytes>}'
            raise Invalid(f"blobs[{i}] is {item!r}; each must be {shape}.")
        wanted[sha] = size
    return wanted


def _part_args(sha256: str, offset: object, size: object) -> tuple[str, int, int]:
    if not SHA256_RE.fullmatch(sha256):
        raise Invalid(f"{sha256!r} is not a sha256 digest: 64 lower-case hex digits.")
    numbers = [int(v) if str(v).isdigit() else -1 for v in (offset, size)]
    if min(numbers) < 0:
        raise Invalid(
            f"Give the part's place as ?offset=<bytes sent before>&size=<blob size>, "
            f"not offset={offset!r}, size={size!r}."
        )
    return sha256, numbers[0], numbers[1]


def _is_size(value: object) -> bool:
    return isinstance(value, int) and not isinstance(value, bool) and value >= 0
