"""Lineage (docs/lineage.md): the dataset snapshots a version was trained on (`trained_on:` in aid.yaml)
and the version of the same model it was retrained from (`parent:`).

The manifest checks their format (registry/lineage.py); at publish `checked_lineage` checks that the
parent is a published version of the model and that each digest names one snapshot the publisher may
read, and stores full digests. Both are kept in the version's stored manifest, so nothing else is
written: a version's children are the versions naming it. Versions are immutable and a parent must be
published first, so the lineage is a forest without cycles.
"""

from __future__ import annotations

from dataclasses import replace

from hub import present
from hub.errors import BadInput, HubError, translated
from monitor import scorecard
from monitor.datasets import DatasetSnapshot, find_snapshots
from registry.models import ModelRow, VersionRow
from registry.package import Package
from vocab.names import semver_key

MAX_DEPTH = 8  # nesting shown; a longer chain goes on at this depth, each version naming its parent


def checked_lineage(package: Package, owner=None) -> Package:
    """`package` with its `trained_on` digests in full, after checking that its parent and snapshots
    exist; BadInput (422) naming each value that does not, and what to do. `owner` (hub/catalog.py
    Owner; None: the hub itself) must be allowed to read each snapshot's model."""
    m = package.manifest
    problems = _parent_problems(m.name, m.parent) if m.parent else []
    digests = []
    for i, digest in enumerate(m.trained_on):
        full, problem = _snapshot_digest(digest, owner)
        digests.append(full or digest)
        if problem:
            problems.append(f"trained_on[{i}]: {problem}")
    if problems:
        raise BadInput(f"aid.yaml names what the hub does not hold: {problems[0]}", problems)
    return replace(package, manifest=replace(m, trained_on=tuple(digests)))


def _parent_problems(name: str, parent: str) -> list[str]:
    query = VersionRow.select(VersionRow.version).join(ModelRow).where(ModelRow.name == name)
    numbers = sorted((v.version for v in query), key=semver_key)
    if parent in numbers:
        return []
    known = f"Its versions: {', '.join(numbers[-20:])}." if numbers else f"{name!r} has no version yet."
    return [
        f"parent: {parent!r} is not a published version of {name!r}. {known} Publish the parent "
        "first, or name one of those (or leave 'parent' out for a first version)."
    ]


def _snapshot_digest(digest: str, owner) -> tuple[str | None, str | None]:
    """(the full "sha256:<64 hex>", None), or (None, what is wrong) for a digest or prefix."""
    with translated():
        found = find_snapshots(digest.removeprefix("sha256:"))
    readable = [row for row in found if _may_read(row, owner)]
    full = sorted({row.digest for row in readable})
    if len(full) > 1:
        shown = ", ".join(f"sha256:{d[:16]}" for d in full[:5])
        return None, f"{digest!r} is the start of several snapshots ({shown}); give more of its digest."
    if not full:
        return None, (
            f"{digest!r} names no dataset snapshot of yours on this hub. 'aid dataset list NAME' lists a "
            "model's snapshots; 'aid dataset export NAME' makes one."
        )
    return f"sha256:{full[0]}", None


def _may_read(row: DatasetSnapshot, owner) -> bool:
    """Whether the publisher may read the snapshot: the model it was taken from is theirs (or the hub
    publishes). Someone else's snapshot is answered as unknown: its existence is not theirs to learn."""
    version = VersionRow.get_or_none(VersionRow.id == row.version_id)
    if version is None:
        return False
    if owner is None:
        return True
    try:
        owner.check(version.model)
    except HubError:
        return False
    return True


class LineageUseCases:
    """Mixed into Hub: uses its catalog."""

    def version_lineage(self, row: VersionRow) -> dict:
        """The version's `parent`, `children` (numbers) and `trained_on` (each snapshot's figures)."""
        versions = self.catalog.versions(row.model)
        snapshots = _snapshots_of([row])
        return present.lineage(row, _children(versions).get(row.version, []), snapshots)

    def lineage(self, name: str) -> dict:
        """Model NAME's versions as a tree (parents before children, roots oldest first), each with
        its datasets and its all-time scorecard numbers side by side."""
        model = self.catalog.model(name)
        versions = sorted(self.catalog.versions(model), key=lambda v: semver_key(v.version))
        snapshots = _snapshots_of(versions)
        with translated():
            cards = {v.id: scorecard.scorecard(v.id) for v in versions}
        children = _children(versions)
        nodes = {
            v.version: {**present.lineage(v, children.get(v.version, []), snapshots),
                        "numbers": present.lineage_numbers(cards[v.id])}
            for v in versions
        }  # fmt: skip
        return {"model": model.name, "tree": nested(nodes, [v.version for v in versions])}


def _children(versions: list[VersionRow]) -> dict[str, list[str]]:
    """parent number -> its children's numbers, oldest first."""
    out: dict[str, list[str]] = {}
    for v in sorted(versions, key=lambda v: semver_key(v.version)):
        parent = v.manifest.get("parent")
        if parent:
            out.setdefault(parent, []).append(v.version)
    return out


def _snapshots_of(versions: list[VersionRow]) -> dict[str, tuple[DatasetSnapshot, VersionRow | None]]:
    """hex digest -> (its first snapshot row, the version it was taken from), for every digest the
    versions name; digests no longer on the hub are absent."""
    wanted = {str(d).removeprefix("sha256:") for v in versions for d in v.manifest.get("trained_on") or []}
    if not wanted:
        return {}
    with translated():
        rows = list(DatasetSnapshot.select().where(DatasetSnapshot.digest.in_(sorted(wanted))))
    sources = {v.id: v for v in VersionRow.select().where(VersionRow.id.in_({r.version_id for r in rows}))}
    out: dict[str, tuple] = {}
    for row in sorted(rows, key=lambda r: r.id):
        out.setdefault(row.digest, (row, sources.get(row.version_id)))
    return out


def nested(nodes: dict[str, dict], order: list[str]) -> list[dict]:
    """The nodes (by version number, in `order`) as a forest: each node's `children` replaced by the
    child nodes. A node whose parent is not among them is a root. Nesting stops at MAX_DEPTH: deeper
    versions are listed at that depth (each still names its parent), so a long chain of retrainings
    stays readable at phone width."""
    roots = [n for n in order if nodes[n]["parent"] not in nodes]

    def node(number: str, depth: int) -> list[dict]:
        kids = [child for kid in nodes[number]["children"] for child in node(kid, depth + 1)]
        if depth >= MAX_DEPTH:
            return [{**nodes[number], "depth": depth, "children": []}, *kids]
        return [{**nodes[number], "depth": depth, "children": kids}]

    return [item for root in roots for item in node(root, 0)]
