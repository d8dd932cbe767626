"""The checkpoint serializer: strict msgpack allow-list (no arbitrary imports on load)."""

from __future__ import annotations

from langgraph.checkpoint.serde.jsonplus import JsonPlusSerializer

__all__ = ["make_serializer"]


def make_serializer() -> JsonPlusSerializer:
    """Msgpack limited to LangGraph's safe allow-list (messages, datetimes, ...)."""
    return JsonPlusSerializer(allowed_msgpack_modules=None)
