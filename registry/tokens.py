"""API tokens: random `aid_...` strings, shown once, stored only as their sha256, each with an owner
and scopes. A token is found by its hash, so the secret itself is never compared."""

from __future__ import annotations

import hashlib
import hmac
import secrets
from datetime import datetime

from peewee import AutoField, CharField, DateTimeField

from database.connection import BaseModel, JSONField
from vocab.times import utcnow

PREFIX = "aid_"
SCOPES = ("read", "predict", "feedback", "publish", "deploy", "admin")


class TokenRow(BaseModel):
    id = AutoField()
    digest = CharField(max_length=64, unique=True)  # sha256 hex of the whole token
    shown = CharField(max_length=16)  # its first characters, to tell tokens apart in a list
    owner = CharField(max_length=100, index=True)
    scopes = JSONField(default=list)
    note = CharField(max_length=200, default="")
    created_at = DateTimeField(default=utcnow)
    expires_at = DateTimeField(null=True)
    revoked_at = DateTimeField(null=True)
    last_used_at = DateTimeField(null=True)

    class Meta:
        table_name = "tokens"


def digest_of(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


def create_token(
    owner: str, scopes: list[str], expires_at: datetime | None = None, note: str = ""
) -> tuple[TokenRow, str]:
    """A new token row and the token itself, which is stored nowhere."""
    token = PREFIX + secrets.token_urlsafe(30)
    row = TokenRow.create(
        digest=digest_of(token), shown=token[:10], owner=owner, scopes=sorted(set(scopes)),
        note=note, expires_at=expires_at,
    )  # fmt: skip
    return row, token


def token_digest(token: str) -> str | None:
    """The digest a token is found by, or None for a string that cannot be a token."""
    return digest_of(token) if token.startswith(PREFIX) and len(token) <= 200 else None


def find_digest(digest: str, now: datetime) -> TokenRow | None:
    """The live token row whose token hashes to `digest` (a signed-in browser keeps only that)."""
    row = TokenRow.get_or_none(TokenRow.digest == digest)
    if row is None or not hmac.compare_digest(row.digest, digest):
        return None
    if row.revoked_at is not None or (row.expires_at is not None and row.expires_at <= now):
        return None
    return row
