"""A version as a list of files, each a content-addressed blob: hashing, the digest, checks, layout.

The digest of a version is the sha256 of its file list, one line `<sha256> <size> <path>\\n` per file,
sorted by the path's UTF-8 bytes (docs/storage.md)."""

from __future__ import annotations

import hashlib
import os
import re
import shutil
import tempfile
from dataclasses import asdict, dataclass
from pathlib import Path

from registry.errors import RegistryError
from registry.manifest import PackageInvalid, Problem
from registry.package import package_files

CHUNK = 1024 * 1024
SHA256_RE = re.compile(r"[0-9a-f]{64}")
MAX_PATH = 1000  # characters of a file's path in a package
MAX_NAME = 255  # bytes of one part of it: what Linux file systems take
MAX_PROBLEMS = 50  # problems of a file list named in an answer; then a count
DEFAULT_MAX_RATIO = 200.0  # AIDHUB_MAX_COMPRESSION_RATIO: bytes unpacked per byte of a .tar.gz


@dataclass(frozen=True)
class FileEntry:
    path: str
    sha256: str
    size: int

    def to_dict(self) -> dict:
        return asdict(self)


@dataclass(frozen=True)
class Limits:
    max_file: int
    max_version: int
    max_files: int
    max_ratio: float = DEFAULT_MAX_RATIO  # an archive unpacking to more per byte read is refused; 0: none

    def check(self, entries: list[FileEntry]) -> None:
        """Raise LimitExceeded when the files break a limit."""
        if len(entries) > self.max_files:
            raise LimitExceeded("files", f"The package has {len(entries)} files", self.max_files)
        for e in entries:
            self.check_file(e.path, e.size)
        self.check_total(sum(e.size for e in entries))

    def check_file(self, path: str, size: int) -> None:
        if size > self.max_file:
            raise LimitExceeded("file", f"{path} is {size:,} bytes", self.max_file)

    def check_total(self, total: int) -> None:
        if total > self.max_version:
            raise LimitExceeded("version", f"The package's files add up to {total:,} bytes", self.max_version)


class LimitExceeded(RegistryError):
    """`kind` is which limit: file, version or files; the hub names its setting."""

    def __init__(self, kind: str, what: str, limit: int):
        unit = "files" if kind == "files" else "bytes"
        super().__init__(f"{what}; the hub's limit is {limit:,} {unit}.")
        self.kind = kind


def hash_file(path: Path) -> tuple[str, int]:
    """(sha256 hex, size) of a file, read 1 MiB at a time."""
    sha, size = hashlib.sha256(), 0
    with open(path, "rb") as f:
        while chunk := f.read(CHUNK):
            sha.update(chunk)
            size += len(chunk)
    return sha.hexdigest(), size


def list_package(root: Path) -> list[FileEntry]:
    """Every file of the package folder, hashed, sorted by path."""
    root = Path(root)
    entries = [FileEntry(p.relative_to(root).as_posix(), *hash_file(p)) for p in package_files(root)]
    return sorted(entries, key=lambda e: e.path.encode())


def manifest_digest(entries: list[FileEntry]) -> str:
    ordered = sorted(entries, key=lambda e: e.path.encode())
    return hashlib.sha256(b"".join(f"{e.sha256} {e.size} {e.path}\n".encode() for e in ordered)).hexdigest()


def path_problem(path: object) -> str | None:
    """Why `path` cannot name a file of a package, or None."""
    if not isinstance(path, str) or not path:
        return f"{_shown(path)} is not a file path"
    parts = path.split("/")
    if path.startswith("/") or ".." in parts or "." in parts or "" in parts or "\\" in path:
        return f"{_shown(path)} points outside the package; use a relative path such as weights/model.bin"
    if any(ord(c) < 32 or ord(c) == 127 for c in path) or len(path) > MAX_PATH:
        return f"{_shown(path)} has control characters or is longer than {MAX_PATH} characters; rename it"
    try:
        longest = max(len(part.encode("utf-8")) for part in parts)
    except UnicodeEncodeError:
        return f"{_shown(path)} is not valid UTF-8; rename the file"
    if longest > MAX_NAME:
        return f"{_shown(path)} has a name longer than {MAX_NAME} bytes; rename the file"
    return None


def _shown(value: object, limit: int = 120) -> str:
    """`value` as an answer shows it: its repr, cut short."""
    text = repr(value)
    return text if len(text) <= limit else f"{text[:limit]}... ({len(text):,} characters)"


def parse_entries(items: object) -> list[FileEntry]:
    """File entries from JSON (`[{"path", "sha256", "size"}]`); raise PackageInvalid listing problems."""
    if not isinstance(items, list) or not items:
        raise PackageInvalid([Problem("files", 'must be a non-empty list of {"path", "sha256", "size"}')])
    problems, entries, seen = [], [], set()
    for i, item in enumerate(items):
        item = item if isinstance(item, dict) else {}
        path, sha, size = item.get("path"), item.get("sha256"), item.get("size")
        problem = path_problem(path)
        if not problem and not (isinstance(sha, str) and SHA256_RE.fullmatch(sha)):
            problem = f"sha256 {_shown(sha)} is not 64 lower-case hex digits"
        if not problem and not (isinstance(size, int) and not isinstance(size, bool) and size >= 0):
            problem = f"size {_shown(size)} is not a number of bytes"
        if not problem and path in seen:
            problem = f"{_shown(path)} is listed twice"
        if problem:
            problems.append(Problem(f"files[{i}]", problem))
            continue
        seen.add(path)
        entries.append(FileEntry(path, sha, size))
    problems += _file_and_folder(entries)
    if len(problems) > MAX_PROBLEMS:
        problems = [*problems[:MAX_PROBLEMS], Problem("files", f"and {len(problems) - MAX_PROBLEMS:,} more")]
    if problems:
        raise PackageInvalid(problems)
    return sorted(entries, key=lambda e: e.path.encode())


def _file_and_folder(entries: list[FileEntry]) -> list[Problem]:
    """A path that is a file and also the folder of another (`a` and `a/b`) cannot be laid out. Sorted
    by their parts, the paths inside a folder follow the path of that name at once."""
    ordered = sorted(e.path.split("/") for e in entries)
    return [
        Problem("files", f"{'/'.join(a)!r} is a file and also the folder of {'/'.join(b)!r}; rename one")
        for a, b in zip(ordered, ordered[1:], strict=False)
        if b[: len(a)] == a
    ]


def lay_out(entries: list[FileEntry], blob_path, dest: Path) -> Path:
    """The package folder `dest` (which must not exist) with each file hard-linked from its blob
    (`blob_path(sha256)`), copied where the two are on different filesystems."""
    dest = Path(dest)
    dest.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(dir=dest.parent, prefix=".layout-"))
    try:
        for entry in entries:
            target = tmp / entry.path
            target.parent.mkdir(parents=True, exist_ok=True)
            _link(blob_path(entry.sha256), target)
        tmp.chmod(0o755)
        try:
            tmp.rename(dest)
        except OSError:  # another process laid it out first: theirs is the same
            if not dest.is_dir():
                raise
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return dest


def _link(source: Path, target: Path) -> None:
    try:
        os.link(source, target)
    except OSError:
        shutil.copyfile(source, target)
        target.chmod(0o444)
