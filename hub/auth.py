"""Who is calling and what they may do: API tokens with scopes and an owner, anonymous callers with the
scopes AIDHUB_ANONYMOUS gives, and models that only their owner (or an admin) may change."""

from __future__ import annotations

import logging
import os
import sys
import threading
import time
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path

from database.connection import UNAVAILABLE, database
from hub.errors import Forbidden, Invalid, NotFound, Unauthorized
from registry.models import ModelRow
from registry.tokens import SCOPES, TokenRow, create_token, digest_of, find_digest, token_digest
from vocab.names import ALIAS_RE
from vocab.times import isoformat, parse_duration, utcnow

log = logging.getLogger(__name__)
CACHE_SECONDS = 5.0  # a revoked token stops working in this process at once, in others within this
ADMIN_TOKEN_FILE = "admin-token"


@dataclass(frozen=True)
class Principal:
    owner: str  # "" for an anonymous caller
    scopes: frozenset[str]
    token_id: int | None = None

    def can(self, scope: str) -> bool:
        return "admin" in self.scopes or scope in self.scopes

    @property
    def admin(self) -> bool:
        return "admin" in self.scopes


def parse_scopes(items, where: str) -> list[str]:
    """Scope names from a list or a comma-separated string; Invalid naming the unknown ones."""
    names = [s.strip() for s in (items.split(",") if isinstance(items, str) else items or []) if s.strip()]
    unknown = [s for s in names if s not in SCOPES]
    if unknown:
        raise Invalid(f"{where}: unknown scope(s) {', '.join(map(repr, unknown))}; use {', '.join(SCOPES)}.")
    return names


class TokenCache:
    """token digest -> (Principal or None, when looked up): most calls cost no query."""

    def __init__(self, seconds: float = CACHE_SECONDS):
        self.seconds = seconds
        self.entries: dict[str, tuple[Principal | None, float]] = {}
        self.lock = threading.Lock()

    def get(self, token: str) -> tuple[bool, Principal | None]:
        entry = self.entries.get(token)
        if entry is None or time.monotonic() - entry[1] > self.seconds:
            return False, None
        return True, entry[0]

    def put(self, token: str, principal: Principal | None) -> None:
        with self.lock:
            if len(self.entries) > 10_000:
                self.entries.clear()
            self.entries[token] = (principal, time.monotonic())

    def clear(self) -> None:
        with self.lock:
            self.entries.clear()


class AuthUseCases:
    """Mixed into Hub: uses its config."""

    def _open_auth(self, first_start: bool) -> None:
        self.anonymous = Principal("", frozenset(self.config.anonymous_scopes))
        self.token_cache = TokenCache()
        if first_start:
            self._first_admin_token()

    def _first_admin_token(self) -> None:
        """On the first start (no token at all): an admin token, written for the local CLI, shown once."""
        with database.atomic():
            if TokenRow.select().exists():
                return
            _, token = create_token("admin", ["admin"], note="created at the first start")
        path = Path(self.config.home) / ADMIN_TOKEN_FILE
        path.parent.mkdir(parents=True, exist_ok=True)
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "w") as f:
            f.write(token + "\n")
        log.info("Created the first admin token in %s (mode 0600): the CLI on this machine uses it", path)
        print(f"The first admin token (shown once; also in {path}): {token}", file=sys.stderr, flush=True)

    def principal(self, token: str | None) -> Principal:
        """The caller a request's bearer token names; anonymous without one. 401 for a token that is
        unknown, revoked or expired."""
        if not token:
            return self.anonymous
        digest = token_digest(token)
        principal = self._live(digest) if digest else None
        if principal is None:
            raise Unauthorized(
                "The token is unknown, revoked or expired. Create one with 'aid token create' and sign in "
                "with 'aid login'."
            )
        return principal

    def sign_in(self, token: str) -> tuple[Principal, str]:
        """(the caller `token` names, what a browser's session keeps of it: its digest); 401 for a
        token that is not live, or for none."""
        caller = self.principal(token)
        if not caller.owner:
            raise Unauthorized("Paste an API token (aid_...); 'aid token create' makes one.")
        return caller, digest_of(token)

    def signed_in(self, digest: str) -> Principal:
        """The caller a signed-in browser's session names (by its token's digest); anonymous when
        that token is no longer live."""
        return self._live(digest) or self.anonymous

    def _live(self, digest: str) -> Principal | None:
        """The caller of the live token with `digest` (cached a few seconds), or None."""
        known, principal = self.token_cache.get(digest)
        if not known:
            try:
                row = find_digest(digest, utcnow())
            except UNAVAILABLE:
                if digest not in self.token_cache.entries:
                    raise
                return self.token_cache.entries[digest][0]  # as last known, while the database is away
            principal = Principal(row.owner, frozenset(row.scopes), row.id) if row else None
            self.token_cache.put(digest, principal)
        return principal

    def require(self, principal: Principal, scope: str) -> None:
        """401 for an anonymous caller, 403 for a token, without `scope`."""
        if principal.can(scope):
            return
        if not principal.owner:
            raise Unauthorized(
                f"This needs the {scope!r} scope, which anonymous callers do not have here. Send a token: "
                "'Authorization: Bearer aid_...' ('aid login' for the CLI, the sign-in page for the web)."
            )
        raise Forbidden(
            f"Your token ({principal.owner}) lacks the {scope!r} scope; it has "
            f"{', '.join(sorted(principal.scopes)) or 'none'}. Ask an admin for a token with {scope!r}."
        )

    def require_owner(self, principal: Principal, model: ModelRow) -> None:
        """403 unless `principal` owns `model` (or it has no owner yet) or is an admin."""
        if principal.admin or not model.owner or model.owner == principal.owner:
            return
        raise Forbidden(
            f"Model {model.name!r} belongs to {model.owner!r}; only they or an admin may publish, move "
            "aliases, deploy or undeploy it."
        )

    def check_model_owner(self, principal: Principal, name: str) -> None:
        self.require_owner(principal, self.catalog.model(name))

    # --- tokens ---------------------------------------------------------------------------

    def create_token(self, principal: Principal, fields: dict) -> dict:
        """A new token for the caller (or, for an admin, for anyone) with at most the caller's scopes."""
        _signed_in(principal)
        owner = str(fields.get("owner") or principal.owner)
        scopes = parse_scopes(fields.get("scopes"), "scopes")
        if not scopes:
            raise Invalid('Give the token scopes, e.g. {"scopes": ["read", "publish"]}.')
        if not ALIAS_RE.fullmatch(owner):
            raise Invalid(
                f"Owner {owner!r} is not a name: start with a letter; lower-case letters, digits, '-'."
            )
        if not principal.admin and (owner != principal.owner or not set(scopes) <= principal.scopes):
            raise Forbidden("Only an admin may create tokens for others, or with scopes beyond their own.")
        expires = fields.get("expires")
        expires_at = utcnow() + _duration(expires) if expires else None
        row, token = create_token(owner, scopes, expires_at, str(fields.get("note") or "")[:200])
        return {**token_dict(row), "token": token}

    def tokens(self, principal: Principal) -> list[dict]:
        _signed_in(principal)
        query = TokenRow.select().order_by(TokenRow.id)
        if not principal.admin:
            query = query.where(TokenRow.owner == principal.owner)
        return [token_dict(r) for r in query]

    def revoke_token(self, principal: Principal, token_id: int) -> dict:
        _signed_in(principal)
        row = TokenRow.get_or_none(TokenRow.id == token_id)
        if row is None or not (principal.admin or row.owner == principal.owner):
            raise NotFound(f"No token {token_id} of yours; list them with 'aid token list'.")
        if row.revoked_at is None:
            row.revoked_at = utcnow()
            row.save()
        self.token_cache.clear()
        return token_dict(row)


def _signed_in(principal: Principal) -> None:
    if not principal.owner:
        raise Unauthorized("Tokens belong to someone: send yours ('aid login') to manage tokens.")


def token_dict(row: TokenRow) -> dict:
    return {
        "id": row.id, "owner": row.owner, "scopes": row.scopes, "shown": row.shown + "...",
        "note": row.note, "created_at": isoformat(row.created_at), "expires_at": isoformat(row.expires_at),
        "revoked": row.revoked_at is not None,
    }  # fmt: skip


def _duration(text) -> timedelta:
    try:
        return parse_duration(str(text))
    except ValueError as e:
        raise Invalid(f"expires {text!r} is not a duration; use e.g. 30d, 12h.") from e
