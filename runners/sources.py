"""Source distributions, found, fetched and read on the host without running any of their code.

The host never builds a package: pip resolves wheels only (runners/environment.py). A requirement
with no wheel for the target is, for the container runner, fetched here as its source archive
straight from the package index that pip is configured with (its simple API, PEP 503, or a
find-links folder), checked against the index's sha256, and read as data only: PKG-INFO's
`Requires-Dist` and pyproject.toml's `build-system.requires`. The archive is then built into a
wheel inside the image's build stage. While pip resolves the other requirements, a metadata-only
placeholder wheel (`write_placeholder`) stands in for the package; it never reaches an image.
"""

from __future__ import annotations

import email.parser
import hashlib
import io
import json
import os
import shutil
import subprocess
import sys
import tarfile
import tomllib
import zipfile
from dataclasses import dataclass
from html.parser import HTMLParser
from pathlib import Path
from urllib.parse import unquote, urljoin, urlparse
from urllib.request import url2pathname

from packaging.requirements import Requirement
from packaging.utils import canonicalize_name, parse_sdist_filename
from packaging.version import Version

from .base import RunnerError

SDIST_SUFFIXES = (".tar.gz", ".zip")
MAX_SOURCE_BYTES = 100 * 1024**2  # a source archive larger than this is refused
MAX_METADATA_BYTES = 1024**2  # PKG-INFO and pyproject.toml are read up to this size
DEFAULT_BUILD_REQUIRES = ("setuptools>=40.8.0", "wheel")  # PEP 517's fallback for a setup.py
# pip's own option parser (its config files and PIP_* variables), read in a child process.
_PIP_LOCATIONS = (
    "import json; from pip._internal.commands import create_command; "
    "o, _ = create_command('download').parse_args([]); "
    "print(json.dumps({'index': [] if o.no_index else [o.index_url, *o.extra_index_urls], "
    "'find_links': o.find_links}))"
)


@dataclass(frozen=True)
class Source:
    """One source archive on an index: its file name, where to get it, its sha256 if known."""

    filename: str
    url: str
    sha256: str | None
    version: Version


@dataclass(frozen=True)
class SourceInfo:
    """What a source archive says about itself, read as data."""

    name: str
    version: str
    requires_dist: tuple[str, ...]
    requires_python: str
    provides_extra: tuple[str, ...]
    build_requires: tuple[str, ...]
    dynamic: tuple[str, ...]  # PKG-INFO fields its build may change (Requires-Dist among them: unknown deps)


def pip_locations() -> dict:
    """{"index": [urls], "find_links": [paths or urls]} as this machine's pip sees them."""
    try:
        out = subprocess.run(
            [sys.executable, "-c", _PIP_LOCATIONS], capture_output=True, text=True, timeout=60, check=True
        ).stdout
        return json.loads(out)
    except (OSError, subprocess.SubprocessError, ValueError):
        return {"index": ["https://pypi.org/simple"], "find_links": []}


def find_source(requirement: str, python: str, locations: dict | None = None) -> Source | None:
    """The newest source archive on pip's indexes that satisfies `requirement` for `python`."""
    req = Requirement(requirement)
    locations = pip_locations() if locations is None else locations
    pages = [f"{url.rstrip('/')}/{canonicalize_name(req.name)}/" for url in locations["index"]]
    found = []
    for page in [*locations["find_links"], *pages]:
        found += [link[0] for link in _listed(page) if _fits(link, req, python)]
    return max(found, key=lambda s: s.version, default=None)


def _fits(link: tuple[Source, str, bool], req: Requirement, python: str) -> bool:
    source, requires_python, yanked = link
    name, version = _sdist_name(source.filename)
    if name != canonicalize_name(req.name) or not req.specifier.contains(version, prereleases=None):
        return False
    pinned = any(spec.operator in ("==", "===") for spec in req.specifier)
    return (pinned or not yanked) and _python_fits(requires_python, python)


def _python_fits(requires_python: str, python: str) -> bool:
    from packaging.specifiers import InvalidSpecifier, SpecifierSet

    try:
        return not requires_python or SpecifierSet(requires_python).contains(f"{python}.0")
    except InvalidSpecifier:
        return True


def _sdist_name(filename: str) -> tuple[str, Version | None]:
    try:
        name, version = parse_sdist_filename(filename)
        return canonicalize_name(name), version
    except Exception:  # packaging's InvalidSdistFilename, InvalidVersion
        return "", None


def _listed(location: str) -> list:
    """(Source, requires-python, yanked) for each source archive a page or folder lists."""
    folder = _local_path(location)
    if folder is not None and folder.is_dir() and not (folder / "index.html").is_file():
        return [(_source(p.name, p.as_uri(), None), "", False) for p in sorted(folder.iterdir())]
    try:
        text = _read(location if folder is None else (folder / "index.html").as_uri())
    except (OSError, RunnerError):
        return []
    links = _Links()
    links.feed(text.decode("utf-8", errors="replace"))
    return [
        (_source(unquote(urlparse(href).path.rsplit("/", 1)[-1]), urljoin(location, href), None), rp, y)
        for href, rp, y in links.found
    ]


def _source(filename: str, url: str, sha256: str | None) -> Source:
    fragment = urlparse(url).fragment
    if fragment.startswith("sha256="):
        sha256 = fragment.split("=", 1)[1]
    return Source(filename, url.split("#", 1)[0], sha256, _sdist_name(filename)[1] or Version("0"))


class _Links(HTMLParser):
    def __init__(self):
        super().__init__()
        self.found: list[tuple[str, str, bool]] = []

    def handle_starttag(self, tag, attrs):
        attrs = dict(attrs)
        href = attrs.get("href") or ""
        if tag == "a" and urlparse(href).path.endswith(SDIST_SUFFIXES):
            yanked = "data-yanked" in attrs
            self.found.append((href, attrs.get("data-requires-python") or "", yanked))


def _local_path(location: str) -> Path | None:
    parsed = urlparse(location)
    if parsed.scheme == "file":
        return Path(url2pathname(parsed.path))
    return Path(location) if parsed.scheme == "" else None


def _read(url: str, limit: int = MAX_SOURCE_BYTES) -> bytes:
    """The bytes at `url` (http(s) or file), at most `limit` of them."""
    path = _local_path(url)
    if path is not None:
        if path.stat().st_size > limit:
            raise RunnerError(f"{url} is larger than {limit:,} bytes; it is not fetched.")
        return path.read_bytes()
    import httpx

    try:
        with httpx.stream("GET", url, follow_redirects=True, timeout=60) as reply:
            reply.raise_for_status()
            data = bytearray()
            for chunk in reply.iter_bytes():
                data += chunk
                if len(data) > limit:
                    raise RunnerError(f"{url} is larger than {limit:,} bytes; it is not fetched.")
            return bytes(data)
    except httpx.HTTPError as e:
        raise RunnerError(f"Could not fetch {url}: {e}") from e


def fetch_source(source: Source, folder: Path) -> Path:
    """Download `source` into `folder` (kept when it is there with the index's hash); its path."""
    folder.mkdir(parents=True, exist_ok=True)
    target = folder / source.filename
    if source.sha256 and target.is_file() and _hash_ok(target.read_bytes(), source.sha256):
        return target
    data = _read(source.url)
    if not _hash_ok(data, source.sha256):
        raise RunnerError(f"{source.url} does not match the index's sha256 {source.sha256}; not used.")
    tmp = folder / f".{source.filename}.tmp{os.getpid()}"
    tmp.write_bytes(data)
    os.replace(tmp, target)
    return target


def _hash_ok(data: bytes, sha256: str | None) -> bool:
    return sha256 is None or hashlib.sha256(data).hexdigest() == sha256.lower()


def read_source(path: Path) -> SourceInfo:
    """PKG-INFO and pyproject.toml of a source archive, read from the archive (nothing extracted)."""
    members = _top_members(path, ("PKG-INFO", "pyproject.toml"))
    if "PKG-INFO" not in members:
        raise RunnerError(f"Source archive {path.name} has no PKG-INFO; it cannot be used.")
    meta = email.parser.BytesParser().parsebytes(members["PKG-INFO"], headersonly=True)
    build = DEFAULT_BUILD_REQUIRES
    if "pyproject.toml" in members:
        system = tomllib.loads(members["pyproject.toml"].decode("utf-8")).get("build-system") or {}
        build = tuple(system.get("requires", DEFAULT_BUILD_REQUIRES))
    return SourceInfo(
        name=str(meta["Name"]),
        version=str(meta["Version"]),
        requires_dist=tuple(str(r) for r in meta.get_all("Requires-Dist") or ()),
        requires_python=str(meta.get("Requires-Python") or ""),
        provides_extra=tuple(str(e) for e in meta.get_all("Provides-Extra") or ()),
        build_requires=tuple(str(r) for r in build),
        dynamic=tuple(str(d) for d in meta.get_all("Dynamic") or ()),
    )


def _top_members(path: Path, names: tuple[str, ...]) -> dict[str, bytes]:
    """The files `<top folder>/<name>` of an archive, each at most MAX_METADATA_BYTES."""
    found = {}
    if path.name.endswith(".zip"):
        with zipfile.ZipFile(path) as archive:
            for info in archive.infolist():
                parts = info.filename.split("/")
                if len(parts) == 2 and parts[1] in names and info.file_size <= MAX_METADATA_BYTES:
                    found.setdefault(parts[1], archive.read(info))
        return found
    with tarfile.open(path, "r:gz") as archive:
        for member in archive:
            parts = member.name.lstrip("./").split("/")
            if (
                len(parts) == 2
                and parts[1] in names
                and member.isfile()
                and member.size <= MAX_METADATA_BYTES
            ):
                found.setdefault(parts[1], archive.extractfile(member).read())
    return found


def placeholder_name(info: SourceInfo) -> str:
    """The file name of the placeholder wheel standing in for `info` while pip resolves."""
    dist = canonicalize_name(info.name).replace("-", "_")
    return f"{dist}-{info.version}-py3-none-any.whl"


def write_placeholder(info: SourceInfo, folder: Path) -> Path:
    """A wheel holding only `info`'s metadata, so that pip resolves its dependencies as wheels."""
    dist_info = f"{canonicalize_name(info.name).replace('-', '_')}-{info.version}.dist-info"
    lines = ["Metadata-Version: 2.1", f"Name: {info.name}", f"Version: {info.version}"]
    lines += [f"Requires-Python: {info.requires_python}"] if info.requires_python else []
    lines += [f"Provides-Extra: {e}" for e in info.provides_extra]
    lines += [f"Requires-Dist: {r}" for r in info.requires_dist]
    files = {
        f"{dist_info}/METADATA": "\n".join(lines) + "\n",
        f"{dist_info}/WHEEL": "Wheel-Version: 1.0\nGenerator: aidhub\nRoot-Is-Purelib: true\n"
        "Tag: py3-none-any\n",
    }
    files[f"{dist_info}/RECORD"] = "".join(f"{name},,\n" for name in [*files, f"{dist_info}/RECORD"])
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as wheel:
        for name, text in files.items():
            wheel.writestr(name, text)
    folder.mkdir(parents=True, exist_ok=True)
    target = folder / placeholder_name(info)
    target.write_bytes(buffer.getvalue())
    return target


def copy_sources(paths, dest: Path) -> None:
    """Copy (hard-link when possible) source archives into `dest`."""
    dest.mkdir(parents=True, exist_ok=True)
    for path in paths:
        try:
            os.link(path, dest / Path(path).name)
        except OSError:
            shutil.copyfile(path, dest / Path(path).name)
