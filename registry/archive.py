"""A package sent as one .tar.gz (curl, older CLIs, versions stored before files were): read as a
stream, each member stored as a blob, nothing unpacked on disk or held in memory.

The archive is unpacked here, not by tarfile, so that the bytes read from the request and the bytes
they unpack to are counted as they go: an archive that unpacks to more than `Limits.max_ratio` times
what it took to send (a compression bomb) is refused a few MiB in, whatever size it claims."""

from __future__ import annotations

import bz2
import lzma
import tarfile
import zlib
from typing import BinaryIO

from registry.blobs import BlobStore
from registry.errors import RegistryError
from registry.files import FileEntry, LimitExceeded, Limits, parse_entries
from registry.manifest import PackageInvalid, Problem

READ = 64 * 1024  # bytes read from the request at a time
UNPACK = 1024 * 1024  # the most bytes one step unpacks: memory stays flat
RATIO_FLOOR = 4 * 1024 * 1024  # the ratio is checked once this much is unpacked
MAX_HEADER = 64 * 1024  # a tar header of its own (a long name, pax attributes) larger is refused
HEADER_TYPES = (tarfile.GNUTYPE_LONGNAME, tarfile.GNUTYPE_LONGLINK, tarfile.XHDTYPE, tarfile.XGLTYPE,
                tarfile.SOLARIS_XHDTYPE)  # fmt: skip
UNPACK_ERRORS = (tarfile.TarError, EOFError, zlib.error, lzma.LZMAError, OSError)


class RatioExceeded(LimitExceeded):
    def __init__(self, read: int, unpacked: int, limit: float):
        RegistryError.__init__(
            self,
            f"The archive unpacks to {unpacked:,} bytes from its first {read:,}, more than {limit:g} "
            f"times its size (a compression bomb?); the hub's limit is a ratio of {limit:g}:1. "
            "'aid publish' sends files one by one, uncompressed, and is not held to it.",
        )
        self.kind = "ratio"


def store_archive(
    stream: BinaryIO,
    blobs: BlobStore,
    limits: Limits,
    entries: list[FileEntry] | None = None,
    created: set[str] | None = None,
) -> list[FileEntry]:
    """Store every file of the archive read from `stream` as a blob; return the file list. Each
    file stored is appended to `entries` as it is, and the digest of each blob the store did not hold
    before to `created`, so a caller can delete those when a later one fails. A full disk raises
    DiskFull (registry/blobs.py), leaving no temp file."""
    entries = [] if entries is None else entries
    total = folders = 0
    try:
        with tarfile.open(fileobj=Unpacked(stream, limits.max_ratio), mode="r|", tarinfo=_Header) as tar:
            for member in tar:
                if problem := member_problem(member):
                    raise PackageInvalid([Problem("archive", problem)])
                if member.isdir():
                    folders += 1
                    if folders > limits.max_files:
                        raise LimitExceeded("files", "The archive has more folders", limits.max_files)
                    continue
                path = member.name.removeprefix("./")
                if len(entries) == limits.max_files:
                    raise LimitExceeded("files", "The archive has more files", limits.max_files)
                limits.check_file(path, member.size)
                total += member.size
                limits.check_total(total)
                sha256, size = blobs.put_stream(tar.extractfile(member), limits.max_file, created)
                entries.append(FileEntry(path, sha256, size))
    except UNPACK_ERRORS as e:
        raise PackageInvalid([Problem("archive", f"cannot be unpacked: {e}")]) from e
    return parse_entries([e.to_dict() for e in entries])


def member_problem(member: tarfile.TarInfo) -> str | None:
    """Why the archive member cannot be part of a package, or None."""
    name = member.name
    if name.startswith("/") or ".." in name.split("/") or "\\" in name:
        return f"{name!r} points outside the package"
    if member.size < 0:  # a pax header may say anything
        return f"{name!r} has a negative size"
    if member.issparse():  # its holes unpack to zeros that no byte read pays for
        return f"{name!r} is a sparse file; packages hold plain files only"
    if not (member.isfile() or member.isdir()):  # symbolic and hard links, devices, FIFOs
        return f"{name!r} is a link or special file; packages hold plain files only"
    return None


class _Header(tarfile.TarInfo):
    """tarfile's member header, refusing a long-name or pax header that would fill memory."""

    def _proc_member(self, tarfile_):
        if self.type in HEADER_TYPES and self.size > MAX_HEADER:
            raise PackageInvalid(
                [Problem("archive", f"has a header of {self.size:,} bytes; the limit is {MAX_HEADER:,}")]
            )
        return super()._proc_member(tarfile_)


class Unpacked:
    """The tar stream inside `stream` (gzip, bzip2, xz or none), unpacked as it is read, at most
    UNPACK bytes at a time. Raises RatioExceeded once past RATIO_FLOOR bytes when the bytes unpacked
    exceed `max_ratio` (0: no limit) times the bytes read."""

    def __init__(self, stream: BinaryIO, max_ratio: float):
        self.stream, self.max_ratio = stream, max_ratio
        self.pending = stream.read(READ)  # read ahead to tell the compression
        self.read_bytes, self.unpacked = len(self.pending), 0
        self.codec = _codec(self.pending)
        self.out, self.pos = memoryview(b""), 0

    def read(self, size: int = -1) -> bytes:
        if self.pos == len(self.out) and not self._fill():
            return b""
        end = len(self.out) if size is None or size < 0 else min(len(self.out), self.pos + size)
        data, self.pos = bytes(self.out[self.pos : end]), end
        return data

    def _take(self) -> bytes:
        if self.pending:
            data, self.pending = self.pending, b""
            return data
        data = self.stream.read(READ)
        self.read_bytes += len(data)
        return data

    def _fill(self) -> bool:
        """Unpack the next piece into `out`; False at the end of the stream."""
        while self.codec is None or not self.codec.eof or self._next_stream():
            data = self._take() if self.codec is None or _hungry(self.codec) else b""
            piece = data if self.codec is None else _unpack(self.codec, data)
            if not piece and not data and (self.codec is None or _hungry(self.codec)):
                if self.codec is None:
                    return False
                raise PackageInvalid([Problem("archive", "is truncated: it ends inside its compressed data")])
            self.unpacked += len(piece)
            self._check_ratio()
            if piece:
                self.out, self.pos = memoryview(piece), 0
                return True
        return False

    def _next_stream(self) -> bool:
        """After one compressed stream, whether another follows (pigz, pbzip2 and bgzip write several)."""
        rest = self.codec.unused_data or self._take()
        following = _codec(rest)
        if following is None:  # the end, or bytes after it that are no archive: ignored, as gzip does
            return False
        self.codec, self.pending = following, rest
        return True

    def _check_ratio(self) -> None:
        if (
            self.max_ratio
            and self.unpacked > RATIO_FLOOR
            and self.unpacked > self.max_ratio * self.read_bytes
        ):
            raise RatioExceeded(self.read_bytes, self.unpacked, self.max_ratio)


def _codec(head: bytes):
    """A decompressor for the stream starting with `head`, or None for a plain tar."""
    if head.startswith(b"\x1f\x8b"):
        return zlib.decompressobj(zlib.MAX_WBITS | 16)
    if head.startswith(b"BZh"):
        return bz2.BZ2Decompressor()
    if head.startswith(b"\xfd7zXZ\x00"):
        return lzma.LZMADecompressor()
    return None


def _hungry(codec) -> bool:
    """Whether `codec` has unpacked everything it was given."""
    tail = getattr(codec, "unconsumed_tail", None)
    return not tail if tail is not None else codec.needs_input


def _unpack(codec, data: bytes) -> bytes:
    if hasattr(codec, "unconsumed_tail"):  # zlib keeps what it did not get to for the caller to resend
        return codec.decompress(codec.unconsumed_tail + data, UNPACK)
    return codec.decompress(data, UNPACK)
