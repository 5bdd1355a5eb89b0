"""Python requirements as a model may list them: PEP 508 names, extras and version specifiers, without
URLs, markers or options, so that a requirement can never become another line of a file or command."""

from __future__ import annotations

import re

_NAME = r"[A-Za-z0-9](?:[A-Za-z0-9._-]*[A-Za-z0-9])?"
_EXTRAS = r"(?:\[[A-Za-z0-9._-]+(?:, ?[A-Za-z0-9._-]+)*\])?"
_SPECIFIER = r"(?:===|==|!=|~=|<=|>=|<|>) ?[A-Za-z0-9.*+!_-]+"
REQUIREMENT = rf"{_NAME}{_EXTRAS} ?(?:{_SPECIFIER}(?: ?, ?{_SPECIFIER})*)?"
REQUIREMENT_RE = re.compile(REQUIREMENT)
REQUIREMENT_HINT = "'package' or 'package>=1.2,<2'"


def is_requirement(value) -> bool:
    return isinstance(value, str) and REQUIREMENT_RE.fullmatch(value.strip()) is not None
