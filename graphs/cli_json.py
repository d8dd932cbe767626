"""`--json` output of the listing commands: the same values the tables show, as one JSON document."""

from __future__ import annotations

import dataclasses
import json
import sys
from datetime import date, datetime
from typing import Any

__all__ = ["jsonable", "print_json"]


def jsonable(value: Any) -> Any:
    """Dataclasses, pydantic models (messages too), times and collections as plain JSON values."""
    if value is None or isinstance(value, str | int | float | bool):
        return value
    if isinstance(value, datetime | date):
        return value.isoformat()
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        return {field.name: jsonable(getattr(value, field.name)) for field in dataclasses.fields(value)}
    if hasattr(value, "model_dump"):
        return jsonable(value.model_dump(mode="json"))
    if isinstance(value, dict):
        return {str(key): jsonable(item) for key, item in value.items()}
    if isinstance(value, list | tuple | set | frozenset):
        return [jsonable(item) for item in value]
    return str(value)


def print_json(value: Any) -> None:
    """One JSON document on stdout and nothing else (Rich is not involved: no wrapping, no markup)."""
    sys.stdout.write(json.dumps(jsonable(value), ensure_ascii=False, indent=2) + "\n")
    sys.stdout.flush()
