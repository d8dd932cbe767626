"""Validation of thread and user ids before they reach SQL, store namespaces or logs."""

from __future__ import annotations

import re

from nodes.errors import InvalidInput

__all__ = ["MAX_ID_LENGTH", "validate_id"]

MAX_ID_LENGTH = 128
_ID_PATTERN = re.compile(r"[A-Za-z0-9][A-Za-z0-9._:@-]*")


def validate_id(value: str, kind: str = "thread id") -> str:
    """The id unchanged when it is 1-128 characters of letters, digits and `._:@-`; else InvalidInput."""
    if not value or len(value) > MAX_ID_LENGTH or not _ID_PATTERN.fullmatch(value):
        raise InvalidInput(
            f"Invalid {kind} {value[:40]!r}: use 1-{MAX_ID_LENGTH} characters from letters, digits "
            "and . _ : @ - (starting with a letter or digit)."
        )
    return value
