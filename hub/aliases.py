"""Aliases and where calls go (roles: `AliasUseCases`, a part of `Hub`).

An alias points at one version, or splits its calls between versions by weight: a canary,
`aid alias iris production 1.0.0=90,1.1.0=10`. Each call through it picks a version by a bucket 0-99:
the hash of the client's key when the caller gives one (X-Aidhub-Client), so that a client stays on
one version, else a random one. Every prediction is logged under the version that answered it, so
each version's scorecard counts its own share. `promote` moves every call to one version and
`rollback` goes back to the assignment before the last change; an alert rule with `action: rollback`
sends every call back to the base when its canary fares worse (`roll_back_canary`). Every change is
kept in the alias history (registry/aliaschanges.py)."""

from __future__ import annotations

import logging
import random
import threading

from hub.catalog import assignment, check_alias_name
from hub.errors import BadInput, Conflict
from hub.routes import Route
from registry import aliaschanges
from registry.models import AliasRow, ModelRow, VersionRow
from vocab.times import isoformat, utcnow
from vocab.weights import BUCKETS, WeightsInvalid, bucket, check_weights, is_weighted, parse_weights, show

log = logging.getLogger(__name__)
DRAIN_SECONDS = 3.0  # longer than the route cache's TTL (hub/routes.py)


class AliasUseCases:
    """Needs the Hub's catalog, deployments, routes, collector and `_version`/`_build`."""

    def set_alias(self, name: str, alias: str, ref: str, retire: bool = False, by: str = "alias") -> dict:
        """Point `alias` at a version, or split it (`ref` as 1.0.0=90,1.1.0=10: see `split_alias`).
        When the alias's version serves and the new one does not, the new one is deployed first and
        the alias moves when it is ready: no call through the alias fails. With `retire`, the version
        the alias left is stopped afterwards (drained: see `_retire`)."""
        if is_weighted(ref):
            return self.split_alias(name, alias, ref)
        version, current = self.catalog.alias_change(name, alias, ref)
        leaving = current if current and current.id != version.id else None
        if leaving and self.deployments.serves(leaving) and not self.deployments.serves(version):
            build = self.deployments.deploy(version, alias, leaving.id if retire else None)
            return {**self._alias_reply(version, alias, False), "build": self._build(build)}
        self._point(version.model, alias, version, by=by)
        self.routes.clear()
        if retire and leaving:
            self._retire(leaving.id)
        return self._alias_reply(version, alias)

    def split_alias(self, name: str, alias: str, weights: str | dict) -> dict:
        """Split the calls through `alias` by `weights` ('1.0.0=90,1.1.0=10', or {"1.0.0": 90, ...}):
        whole percentages adding up to 100, each of a version that serves; else 422, alias unchanged."""
        check_alias_name(alias)
        try:
            asked = parse_weights(weights) if isinstance(weights, str) else check_weights(weights)
        except WeightsInvalid as e:
            raise BadInput(str(e)) from e
        versions = {ref: self.catalog.resolve(name, ref) for ref in asked}
        split = {}
        for ref, version in versions.items():
            if version.version in split:
                raise BadInput(f"{ref!r} and {version.version!r} are one version; give it once, added up.")
            split[version.version] = asked[ref]
        self._check_serving(name, alias, versions.values())
        return self._assign(name, alias, split)

    def promote(self, name: str, ref: str, alias: str = "production") -> dict:
        """Every call through `alias` to one version (deployed first when it does not serve); the
        assignment it had is kept, for `rollback`."""
        return self.set_alias(name, alias, ref, by="promote")

    def rollback(self, name: str, alias: str = "production") -> dict:
        """Back to what `alias` pointed at before its last change (a promote, a new split); 409 when
        it has no earlier assignment or a version of it no longer serves."""
        check_alias_name(alias)
        model = self.catalog.model(name)
        previous = self.catalog.previous(model, alias)
        if previous is None:
            raise Conflict(
                f"{name}@{alias} has no earlier assignment to go back to (it was rolled back already, "
                f"or never changed). Point it yourself: aid alias {name} {alias} VERSION."
            )
        versions = [self.catalog.resolve(name, number) for number in previous]
        self._check_serving(name, alias, versions, Conflict)
        return self._assign(name, alias, previous, remember=False, by="rollback")

    def roll_back_canary(self, name: str, alias: str, canary: str, by: str) -> dict:
        """Every call through `alias` back to its base (the largest share), as `rollback` writes it:
        what an alert rule with `action: rollback` does when the canary fares worse. 409 when the alias
        no longer sends calls to `canary` (rolled back already, promoted, changed): nothing is done twice."""
        model = self.catalog.model(name)
        split = self.catalog.alias_weights(model).get(alias) or {}
        base = self.catalog.resolve(name, alias) if split else None
        if base is None or canary == base.version or canary not in split:
            target = show(split) if split else "one version"
            raise Conflict(
                f"{name}@{alias} no longer sends calls to canary {canary} (it points at {target})."
            )
        self._check_serving(name, alias, [base], Conflict)
        return {
            **self._assign(name, alias, {base.version: BUCKETS}, remember=False, by=by),
            "was": show(split),
        }

    def alias_history(self, name: str, limit: int = 50) -> dict:
        """Where the model's aliases point (the hub's `latest` too), the weights of those that split
        calls, and their latest changes, newest first."""
        model = self.catalog.model(name)
        changes = [
            {"alias": c.alias, "before": c.before, "after": c.after, "by": c.by, "at": isoformat(c.at)}
            for c in aliaschanges.changes(model.name, limit)
        ]
        aliases, weights = self.catalog.aliases(model), self.catalog.alias_weights(model)
        return {"model": model.name, "aliases": aliases, "weights": weights, "changes": changes}

    def _assign(
        self, name: str, alias: str, split: dict[str, int], remember: bool = True, by: str = "alias"
    ) -> dict:
        """Write a checked split (number -> percent); the version with the largest share is the base."""
        base = self.catalog.resolve(name, max(split, key=split.get))
        self._point(base.model, alias, base, split, remember=remember, by=by)
        self.routes.clear()
        log.info("alias %s of %s now splits %s", alias, name, show(split))
        return self._alias_reply(base, alias)

    def _point(self, model: ModelRow, alias: str, base: VersionRow, split=None, remember=True, by="alias"):
        """catalog.point, kept in the alias history."""
        before = _assigned(model, alias)
        self.catalog.point(model, alias, base, split, remember=remember)
        after = show(split) if len(split or ()) > 1 else base.version
        aliaschanges.record(model.name, alias, before, after, by, utcnow())

    def _check_serving(self, name: str, alias: str, versions, error=BadInput) -> None:
        idle = [v.version for v in versions if not self.deployments.serves(v)]
        if idle:
            said = ", ".join(idle)
            raise error(
                f"{name} {said} does not serve, so {alias} cannot send calls to it; the alias is "
                f"unchanged. Deploy it first (aid deploy {name}@{idle[0]}), then try again."
            )

    def _alias_reply(self, base: VersionRow, alias: str, moved: bool = True) -> dict:
        weights = self.catalog.alias_weights(base.model).get(alias) if moved else None
        return {**self._version(base), "alias": alias, "moved": moved, "weights": weights}

    def _move_alias(self, build) -> None:
        """Called when a build succeeded, inside its transaction: move the alias it waited for."""
        if build.alias:
            version = build.version
            self._point(version.model, build.alias, version, by=f"build {build.id}")
            log.info("alias %s of %s now points at %s", build.alias, version.model.name, version.version)
            if build.retire:
                self._retire(build.retire)

    def _retire(self, version_id: int) -> None:
        """Stop a version an alias left, unless another alias still names it: after DRAIN_SECONDS
        (every hub process's route cache has moved on by then) and gracefully, so that the calls it
        is answering finish."""

        def retire():
            version = VersionRow.get_or_none(VersionRow.id == version_id)
            if version is not None and not self.catalog.aliases_of(version):
                log.info("retiring %s@%s", version.model.name, version.version)
                self.collector.collect()
                self.deployments.undeploy(version)
            self.release_connection()

        threading.Timer(DRAIN_SECONDS, retire).start()

    # --- where calls go ---------------------------------------------------------------------

    def target(self, name: str, ref: str | None = None) -> VersionRow:
        """The version a call goes to: the ref, else production, else the newest ready version. Of a
        split alias, its base (the largest share)."""
        version = self.catalog.resolve(name, ref)
        if ref is None and not self.catalog.has_alias(version.model, "production"):
            return self.deployments.newest_ready(version.model) or version
        return version

    def route(self, name: str, ref: str | None = None, client: str = "") -> Route:
        """Where one call to NAME[@REF] goes; `client`, a caller's key, keeps them on one version of
        a split alias (for the same weights)."""
        split = self.routes.get((name, ref), lambda: self._parts(name, ref))
        return split.pick(bucket(client) if client else random.randrange(BUCKETS))

    def _parts(self, name: str, ref: str | None) -> list:
        version = self.target(name, ref)
        shares = self.catalog.split(version.model, ref or "production") or [(version, BUCKETS)]
        return [(v, lambda v=v: self.deployments.endpoint(v), weight) for v, weight in shares]


def _assigned(model: ModelRow, alias: str) -> str | None:
    """Where `alias` sends calls now: '1.0.0', '1.0.0=90,1.1.0=10'; None: it does not exist yet."""
    row = AliasRow.get_or_none(AliasRow.model == model, AliasRow.name == alias)
    pairs = assignment(row) if row else None
    return None if pairs is None else show(dict(pairs)) if len(pairs) > 1 else pairs[0][0]
