"""Container image references (github.com/distribution/reference's grammar, with a tag or digest) and
the keys that choose a base image."""

from __future__ import annotations

import re

from vocab.names import FRAMEWORKS

_DOMAIN_PART = r"[A-Za-z0-9](?:[A-Za-z0-9-]*[A-Za-z0-9])?"
_DOMAIN = rf"{_DOMAIN_PART}(?:\.{_DOMAIN_PART})*(?::[0-9]+)?"
_COMPONENT = r"[a-z0-9]+(?:(?:[._]|__|-+)[a-z0-9]+)*"
_TAG = r"[A-Za-z0-9_][A-Za-z0-9_.-]{0,127}"
_DIGEST = r"sha256:[a-f0-9]{64}"
IMAGE = rf"(?:{_DOMAIN}/)?{_COMPONENT}(?:/{_COMPONENT})*(?::{_TAG}(?:@{_DIGEST})?|@{_DIGEST})"
IMAGE_RE = re.compile(IMAGE)
IMAGE_HINT = "an image reference with a tag or digest, e.g. python:3.11-slim"

DEVICES = ("cpu", "gpu")
# A manifest's `base_image` names a base per device...
MANIFEST_BASE_IMAGE_KEYS = DEVICES
# ...a hub's AIDHUB_BASE_IMAGE[S] per device, and per framework and device.
HUB_BASE_IMAGE_KEYS = (*DEVICES, *(f"{f}-{d}" for f in FRAMEWORKS for d in DEVICES))


def is_image(value) -> bool:
    return isinstance(value, str) and IMAGE_RE.fullmatch(value) is not None
