"""The manifest's lineage fields, their format only (docs/lineage.md): `trained_on`, the dataset
snapshot(s) a version was trained on, and `parent`, the version of the same model it was retrained
from. Whether they exist is the hub's question at publish (hub/lineage.py): the package alone cannot
know.

`parent` is an exact version number, never an alias: aliases move and a lineage must not. It names a
version of the same model; a model trained from another model's version says so in its card.
"""

from __future__ import annotations

import re
from collections.abc import Callable

from vocab.names import SEMVER_RE

SNAPSHOT_RE = re.compile(r"(?:sha256:)?([0-9a-f]{8,64})")
SNAPSHOT_HINT = "a snapshot digest, sha256:<hex> (8 to 64 hex digits), as 'aid dataset list NAME' shows"
MAX_TRAINED_ON = 100
PARENT_HINT = "the version number of this model it was retrained from, e.g. 1.0.0"


def check_lineage(data: dict, fail: Callable[[str, str], None]) -> dict:
    """{"trained_on": ("sha256:<hex>", ...), "parent": "1.0.0" | None} from the manifest's fields,
    normalised; problems go to `fail(path, message)`."""
    return {"trained_on": _trained_on(data.get("trained_on"), fail), "parent": _parent(data, fail)}


def _trained_on(value, fail) -> tuple[str, ...]:
    if value is None:
        return ()
    values = [value] if isinstance(value, str) else value
    if not isinstance(values, list) or len(values) > MAX_TRAINED_ON:
        fail("trained_on", f"must be one digest or a list of at most {MAX_TRAINED_ON}: [sha256:<hex>, ...]")
        return ()
    digests: list[str] = []
    for i, item in enumerate(values):
        path = "trained_on" if isinstance(value, str) else f"trained_on[{i}]"
        match = SNAPSHOT_RE.fullmatch(item.strip().lower()) if isinstance(item, str) else None
        if match is None:
            fail(path, f"{_shown(item)} is not valid: use {SNAPSHOT_HINT}")
        elif (digest := f"sha256:{match.group(1)}") in digests:
            fail(path, f"{digest!r} is named twice; name each snapshot once")
        else:
            digests.append(digest)
    return tuple(digests)


def _parent(data: dict, fail) -> str | None:
    value = data.get("parent")
    if value is None:
        return None
    text = str(value).strip() if isinstance(value, str | int | float) else None
    if text and "@" in text:
        return fail("parent", f"{text!r} names another model; name a version of this one: {PARENT_HINT}")
    if not text or not SEMVER_RE.fullmatch(text):
        return fail("parent", f"{_shown(value)} is not valid: use {PARENT_HINT}")
    if text == str(data.get("version", "")).strip():
        return fail("parent", f"{text!r} is this version itself; name the version it was retrained from")
    return text


def _shown(value, limit: int = 80) -> str:
    """The value as the message quotes it, cut short: a manifest may hold a megabyte in one field."""
    text = repr(value)
    return text if len(text) <= limit else text[:limit] + "..."
