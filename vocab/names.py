"""Names of models, versions, aliases, tags and tasks, and the `NAME@REF` form that addresses a version."""

from __future__ import annotations

import re

MODEL_NAME = r"(?:[a-z0-9][a-z0-9-]{0,62}/)?[a-z0-9][a-z0-9-]{0,62}"
SEMVER = r"[0-9]+\.[0-9]+\.[0-9]+(?:-[0-9A-Za-z.-]+)?(?:\+[0-9A-Za-z.-]+)?"  # ASCII: \d is any digit
ALIAS = r"[a-z][a-z0-9-]{0,62}"
TAG = r"[a-z0-9][a-z0-9._-]{0,39}"
DIGEST = r"[0-9a-f]{64}"
PYTHON_VERSION = r"3\.[0-9]{1,2}"

MODEL_NAME_RE = re.compile(MODEL_NAME)
SEMVER_RE = re.compile(SEMVER)
ALIAS_RE = re.compile(ALIAS)
TAG_RE = re.compile(TAG)
PYTHON_VERSION_RE = re.compile(PYTHON_VERSION)
FRAMEWORKS = ("onnx", "torch", "sklearn", "python")
HUB_ALIASES = ("latest",)  # kept by the hub; nobody sets them


def split_ref(text: str) -> tuple[str, str | None]:
    """'iris@1.0.0' -> ('iris', '1.0.0'); 'iris' -> ('iris', None)."""
    name, _, ref = text.partition("@")
    return name, ref or None


def semver_key(version: str) -> tuple:
    """A sort key: 1.10.0 after 1.9.0, a pre-release before its release."""
    core, _, pre = version.partition("+")[0].partition("-")
    numbers = tuple(int(p) for p in core.split("."))
    return (*numbers, 0 if pre else 1, pre)


def normalise_task(task: str) -> str:
    """'Tabular Classification' -> 'tabular-classification'."""
    return re.sub(r"[^a-z0-9]+", "-", task.strip().lower()).strip("-")
