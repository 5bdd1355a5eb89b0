"""Sizes as Kubernetes writes them: '512Mi' (binary Ki Mi Gi Ti), '1G' (decimal K M G T) or bytes."""

from __future__ import annotations

import math
import re
from fractions import Fraction

SIZE_RE = re.compile(r"([0-9]+(?:\.[0-9]+)?)(Ki|Mi|Gi|Ti|K|M|G|T)?")
UNITS = {"": 1, "K": 1000, "M": 1000**2, "G": 1000**3, "T": 1000**4}
UNITS.update({"Ki": 1024, "Mi": 1024**2, "Gi": 1024**3, "Ti": 1024**4})


def parse_size(value) -> int:
    """Bytes of '512Mi', '1G' or '1048576'; ValueError for anything else."""
    match = SIZE_RE.fullmatch(str(value).strip()) if not isinstance(value, bool) else None
    if match is None:
        raise ValueError(f"{value!r} is not a size such as 512Mi or 2Gi")
    return math.ceil(Fraction(match.group(1)) * UNITS[match.group(2) or ""])


def format_size(size: int) -> str:
    """Bytes as a manifest writes them: 268435456 -> '256Mi'; plain bytes when no unit divides."""
    for unit, factor in (("Ti", 1024**4), ("Gi", 1024**3), ("Mi", 1024**2), ("Ki", 1024)):
        if size and size % factor == 0:
            return f"{size // factor}{unit}"
    return f"{size} bytes"
