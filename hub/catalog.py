"""Publishing and finding models: versions, aliases, search. Works on the registry tables."""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass
from typing import BinaryIO

from peewee import IntegrityError

from database.connection import database
from hub.errors import Conflict, HubError, Invalid, NotFound, TooLarge, public
from hub.lineage import checked_lineage
from hub.packages import Packages, files_of
from registry.files import FileEntry, manifest_digest
from registry.manifest import PackageInvalid
from registry.models import AliasRow, FileRow, ModelRow, VersionRow
from registry.package import Package, validate_package
from vocab.names import ALIAS_RE, HUB_ALIASES, semver_key
from vocab.times import utcnow

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Owner:
    """Who publishes: `name` owns the models they create; `check(model)` raises unless they may
    publish versions of `model`."""

    name: str
    check: Callable[[ModelRow], None]


class Catalog:
    def __init__(self, packages: Packages):
        self.packages = packages

    # --- publishing ---------------------------------------------------------------------

    def publish_archive(
        self, stream: BinaryIO, length: int | None = None, owner: Owner | None = None
    ) -> tuple[VersionRow, bool, int]:
        """Store a package sent as one .tar.gz of `length` bytes (when known)."""
        if length and length > self.packages.limits.max_version:
            raise TooLarge(
                f"The upload of {length:,} bytes is larger than the limit of "
                f"{self.packages.limits.max_version:,} bytes. Shrink the package, or raise "
                "AIDHUB_MAX_VERSION_SIZE on the hub."
            )
        entries = self.packages.store_archive(stream, length)
        try:
            return self.publish_files(entries, owner)
        except HubError:
            self.packages.forget(entries)  # one request, refused whole: nothing of it is kept
            raise

    def publish_files(
        self, entries: list[FileEntry], owner: Owner | None = None
    ) -> tuple[VersionRow, bool, int]:
        """Record the version whose files are `entries` (their blobs stored); return (version,
        created, bytes no other version held). The same files again: no-op. `owner` names who
        publishes (a new model becomes theirs) and checks they may publish to an existing one."""
        folder, digest = self.packages.lay_out(entries)
        try:
            package = validate_package(folder)
        except PackageInvalid as e:
            self.packages.discard(digest)
            raise public(e) from e
        existing = ModelRow.get_or_none(ModelRow.name == package.manifest.name)
        if existing and owner:
            owner.check(existing)
        try:
            package = checked_lineage(package, owner)  # its parent and snapshots exist (hub/lineage.py)
        except HubError:
            self.packages.discard(digest)
            raise
        new_bytes = self.packages.new_bytes(entries)
        row, created = self._record(package, digest, entries, owner.name if owner else "")
        self.packages.uploads.taken(e.sha256 for e in entries)
        return row, created, new_bytes if created else 0

    def _record(
        self, package: Package, digest: str, entries: list[FileEntry], owner: str
    ) -> tuple[VersionRow, bool]:
        m = package.manifest
        size = sum(e.size for e in entries)
        with database.atomic():
            model = self._upsert_model(package, owner)
            existing = VersionRow.get_or_none(model=model, version=m.version)
            if existing:
                return self._same_or_conflict(existing, digest), False
            try:
                with database.atomic():
                    row = VersionRow.create(
                        model=model, version=m.version, digest=digest, size=size,
                        manifest=m.to_dict(), inputs=package.inputs, outputs=package.outputs,
                        card=package.card, examples=package.examples,
                    )  # fmt: skip
                    FileRow.insert_many([{"version": row, **e.to_dict()} for e in entries]).execute()
            except IntegrityError:  # another upload of the same version won the race
                existing = VersionRow.get(model=model, version=m.version)
                return self._same_or_conflict(existing, digest), False
            self._update_latest(model)
        log.info("published %s@%s (%s)", m.name, m.version, digest[:12])
        return row, True

    def _same_or_conflict(self, existing: VersionRow, digest: str) -> VersionRow:
        """`existing` when it has the same files (its digest may be an archive's: docs/storage.md)."""
        if digest in (existing.digest, manifest_digest(files_of(existing))):
            return existing
        raise Conflict(
            f"{existing.model.name}@{existing.version} is already published with digest "
            f"{existing.digest[:12]}; versions are immutable. Bump 'version' in aid.yaml and publish again."
        )

    def _upsert_model(self, package: Package, owner: str) -> ModelRow:
        m = package.manifest
        defaults = {"task": m.task, "summary": m.summary, "tags": list(m.tags), "owner": owner}
        model, created = ModelRow.get_or_create(name=m.name, defaults=defaults)
        if not created:
            model.task, model.summary, model.tags = m.task, m.summary, list(m.tags)
            model.updated_at = utcnow()
            model.save()
        return model

    def _update_latest(self, model: ModelRow) -> None:
        versions = list(VersionRow.select().where(VersionRow.model == model))
        newest = max(versions, key=lambda v: semver_key(v.version))
        self.point(model, "latest", newest)

    def point(
        self, model: ModelRow, alias: str, version: VersionRow, weights: dict[str, int] | None = None,
        remember: bool = True,
    ) -> None:  # fmt: skip
        """Point `alias` at `version` (its base), splitting calls by `weights` (number -> percent)
        when they name more than one version. The assignment it had is kept for a rollback, unless
        `remember` is False (a rollback itself: nothing is left to go back to)."""
        split = [[number, weight] for number, weight in weights.items()] if len(weights or ()) > 1 else None
        current = self._alias(model, alias)
        previous = assignment(current) if remember and current else None
        if current and previous == (split or [[version.version, 100]]):
            previous = current.previous  # set again as it was: the earlier assignment still counts
        values = {"version": version.id, "weights": split, "previous": previous, "updated_at": utcnow()}
        AliasRow.insert(model=model, name=alias, **values).on_conflict(
            conflict_target=[AliasRow.model, AliasRow.name],
            update={getattr(AliasRow, field): value for field, value in values.items()},
        ).execute()

    # --- finding ------------------------------------------------------------------------

    def model(self, name: str) -> ModelRow:
        row = ModelRow.get_or_none(ModelRow.name == name)
        if row is None:
            known = [m.name for m in ModelRow.select(ModelRow.name).order_by(ModelRow.name).limit(20)]
            hint = f" Models: {', '.join(known)}." if known else " No model is published yet."
            raise NotFound(f"Model {name!r} does not exist.{hint}")
        return row

    def resolve(self, name: str, ref: str | None = None) -> VersionRow:
        """A version by number or alias; no ref means `production` if set, else `latest`."""
        model = self.model(name)
        if ref is None:
            alias = self._alias(model, "production") or self._alias(model, "latest")
            if alias is None:
                raise NotFound(f"Model {name!r} has no versions yet. Publish one with 'aid publish'.")
            return alias.version
        version = VersionRow.get_or_none(model=model, version=ref)
        alias = None if version else self._alias(model, ref)
        if version or alias:
            return version or alias.version
        raise NotFound(self._no_such_ref(model, ref))

    def aliases(self, model: ModelRow) -> dict[str, str]:
        """The model's aliases, by name: alias -> version number."""
        rows = AliasRow.select(AliasRow, VersionRow).join(VersionRow).where(AliasRow.model == model)
        return {a.name: a.version.version for a in sorted(rows, key=lambda a: a.name)}

    def versions(self, model: ModelRow) -> list[VersionRow]:
        """The model's versions, newest first."""
        rows = VersionRow.select(VersionRow, ModelRow).join(ModelRow).where(VersionRow.model == model)
        return sorted(rows, key=lambda v: semver_key(v.version), reverse=True)

    def aliases_of(self, version: VersionRow) -> list[str]:
        """The names of the aliases that point at `version`, the hub's `latest` left out."""
        rows = AliasRow.select().where(AliasRow.model == version.model_id, AliasRow.name.not_in(HUB_ALIASES))
        return sorted(a.name for a in rows if version.version in dict(assignment(a)))

    def alias_weights(self, model: ModelRow) -> dict[str, dict[str, int]]:
        """The aliases that split their calls: alias -> {version number: percent}."""
        rows = AliasRow.select().where(AliasRow.model == model, AliasRow.weights.is_null(False))
        return {a.name: dict(a.weights) for a in sorted(rows, key=lambda a: a.name)}

    def split(self, model: ModelRow, alias: str) -> list[tuple[VersionRow, int]] | None:
        """The versions `alias` splits its calls between, with their percent; None: it does not."""
        row = self._alias(model, alias)
        if row is None or not row.weights:
            return None
        found = {v.version: v for v in VersionRow.select().where(VersionRow.model == model)}
        return [(found[number], weight) for number, weight in row.weights if number in found]

    def previous(self, model: ModelRow, alias: str) -> dict[str, int] | None:
        """What `alias` pointed at before its last change (number -> percent); None: nothing."""
        row = self._alias(model, alias)
        return dict(row.previous) if row and row.previous else None

    def has_alias(self, model: ModelRow, name: str) -> bool:
        return self._alias(model, name) is not None

    def _alias(self, model: ModelRow, name: str) -> AliasRow | None:
        return AliasRow.get_or_none(model=model, name=name)

    def _no_such_ref(self, model: ModelRow, ref: str) -> str:
        versions = ", ".join(sorted((v.version for v in model.versions), key=semver_key))
        aliases = ", ".join(sorted(a.name for a in model.aliases))
        return (
            f"Model {model.name!r} has no version or alias {ref!r}. "
            f"Versions: {versions or 'none'}. Aliases: {aliases or 'none'}."
        )

    def alias_change(self, name: str, alias: str, ref: str) -> tuple[VersionRow, VersionRow | None]:
        """(the version `ref` names, the one `alias` points at now) after checking the alias name."""
        check_alias_name(alias)
        version = self.resolve(name, ref)
        current = self._alias(version.model, alias)
        return version, current.version if current else None

    def versions_for_task(self, task: str) -> list[VersionRow]:
        query = VersionRow.select(VersionRow, ModelRow).join(ModelRow).where(ModelRow.task == task)
        return list(query)


def check_alias_name(alias: str) -> None:
    """Invalid unless `alias` is a name people may set."""
    if not ALIAS_RE.fullmatch(alias or ""):
        raise Invalid(
            f"Alias {alias!r} is not valid: use lower-case letters, digits and '-', e.g. production."
        )
    if alias in HUB_ALIASES:
        raise Invalid(f"Alias {alias!r} is kept by the hub; choose another name, e.g. production.")


def assignment(row: AliasRow) -> list[list]:
    """Where an alias row sends calls, as [[version number, percent], ...]."""
    return [list(pair) for pair in row.weights] if row.weights else [[row.version.version, 100]]
