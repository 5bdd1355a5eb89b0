"""What a runner is told about a version: the ServeSpec made from its registry row."""

from __future__ import annotations

from pathlib import Path

from registry.batching import batching_settings
from registry.manifest import base_image_overrides
from registry.models import VersionRow
from runners.base import ServeSpec
from vocab.sizes import parse_size


def spec_for(version: VersionRow, package_dir: Path) -> ServeSpec:
    m = version.manifest
    resources = m.get("resources") or {}
    return ServeSpec(
        name=version.model.name, version=version.version, digest=version.digest, package_dir=package_dir,
        framework=m["framework"], artifact=m.get("artifact"), entrypoint=m.get("entrypoint"),
        inputs=version.inputs, outputs=version.outputs, requirements=tuple(m.get("requirements") or ()),
        python=m.get("python") or "3.11", gpu=str(resources.get("gpu", "0")),
        labels=tuple(m.get("labels") or ()), cpus=float(resources.get("cpu", 1)),
        memory_bytes=parse_size(resources.get("memory", "1Gi")),
        base_images=base_image_overrides(m.get("base_image")), batching=batching_settings(m.get("batching")),
        files=_file_digests(version),
    )  # fmt: skip


def _file_digests(version: VersionRow) -> dict[str, str]:
    """path -> sha256 of the version's files (the blob digests: a weights image's key needs no
    hashing); {} for a row not saved (no files listed)."""
    if version.id is None:
        return {}
    return {row.path: row.sha256 for row in version.files}
