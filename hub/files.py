"""The Hub's use cases for package files: publishing (in parts or as one archive), pulling, storage."""

from __future__ import annotations

import functools
from pathlib import Path
from typing import BinaryIO

from hub import present
from hub.auth import Principal
from hub.catalog import Owner
from hub.errors import NotFound, public
from hub.packages import files_of
from registry.files import parse_entries, path_problem
from registry.manifest import PackageInvalid
from registry.models import FileRow
from registry.package import csv_header


class FileUseCases:
    """Mixed into Hub: uses its catalog, routes and alerts."""

    def publish(
        self, stream: BinaryIO, length: int | None = None, principal: Principal | None = None
    ) -> dict:
        """Store a package sent as one .tar.gz (`length` bytes when known)."""
        return self._published(*self.catalog.publish_archive(stream, length, self._owner(principal)))

    def publish_files(self, files: object, principal: Principal | None = None) -> dict:
        """Record a version from its file list (`[{"path", "sha256", "size"}]`), every blob uploaded."""
        try:
            entries = parse_entries(files)
        except PackageInvalid as e:
            raise public(e) from e
        return self._published(*self.catalog.publish_files(entries, self._owner(principal)))

    def _owner(self, principal: Principal | None) -> Owner | None:
        """Who publishes, and the check that they may publish to a model; None: the hub itself."""
        if principal is None:
            return None
        return Owner(principal.owner, lambda model: self.require_owner(principal, model))

    def _published(self, version, created: bool, new_bytes: int) -> dict:
        self._alerts_from_package(version, created)
        self.routes.clear()
        files = files_of(version)
        return {
            **self._version(version), **self.version_lineage(version), "created": created,
            "files": len(files), "new_bytes": new_bytes,
            "deduplicated_bytes": version.size - new_bytes if created else 0,
        }  # fmt: skip

    def missing_blobs(self, blobs: object) -> dict:
        return self.catalog.packages.missing(blobs)

    def upload_part(self, sha256: str, offset, size, stream: BinaryIO, length: int | None) -> dict:
        return self.catalog.packages.upload_part(sha256, offset, size, stream, length)

    def version_files(self, name: str, ref: str | None) -> dict:
        version = self.catalog.resolve(name, ref)
        return present.version_files(version, files_of(version))

    def version_file(self, name: str, ref: str | None, path: str) -> tuple[Path, str, int]:
        """(where the bytes are, sha256, size) of one file of a version."""
        version = self.catalog.resolve(name, ref)
        row = None if path_problem(path) else FileRow.get_or_none(version=version, path=path)
        if row is None:
            raise NotFound(
                f"{name}@{version.version} has no file {path!r}; list them with "
                f"GET /api/v1/models/{name}/versions/{version.version}/files."
            )
        return self.catalog.packages.blobs.path(row.sha256), row.sha256, row.size

    def reference_columns(self, name: str, ref: str | None = None) -> list[str]:
        """The column names of the version's reference data (its header line), [] without one."""
        version = self.catalog.resolve(name, ref)
        path = version.manifest.get("reference_data")
        row = FileRow.get_or_none(version=version, path=path) if path else None
        if row is None:
            return []
        try:
            return list(_header_of(self.catalog.packages.blobs.path(row.sha256)))
        except OSError:
            return []

    def storage(self) -> dict:
        return self.catalog.packages.storage()


@functools.lru_cache(maxsize=256)
def _header_of(blob: Path) -> tuple[str, ...]:
    """A reference CSV's columns, read once per blob: a blob never changes."""
    return tuple(csv_header(blob, blob.name, []))
