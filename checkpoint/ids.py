"""Validation of thread and user ids before they reach SQL, store namespaces or logs."""

from __future__ import annotations

import re

from nodes.errors import InvalidInput

__all__ = ["MAX_ID_LENGTH", "validate_id", "validate_user_id"]

MAX_ID_LENGTH = 128
_ID_PATTERN = re.compile(r"[A-Za-z0-9][A-Za-z0-9._:@-]*")
_USER_ID_PATTERN = re.compile(r"[A-Za-z0-9][A-Za-z0-9_:@-]*")


def validate_id(value: str, kind: str = "thread id") -> str:
    """The id unchanged when it is 1-128 characters of letters, digits and `._:@-`; else InvalidInput."""
    return _checked(value, kind, _ID_PATTERN, ". _ : @ -")


def validate_user_id(value: str, kind: str = "user id") -> str:
    """As validate_id but without `.`: a user id is a label of store namespaces, which refuse dots."""
    return _checked(value, kind, _USER_ID_PATTERN, "_ : @ -")


def _checked(value: str, kind: str, pattern: re.Pattern[str], punctuation: str) -> str:
    if not value or len(value) > MAX_ID_LENGTH or not pattern.fullmatch(value):
        raise InvalidInput(
            f"Invalid {kind} {value[:40]!r}: use 1-{MAX_ID_LENGTH} characters from letters, digits "
            f"and {punctuation} (starting with a letter or digit)."
        )
    return value
