"""A tool an assistant file names by `package.module:attribute` in the tests."""

from __future__ import annotations

__all__ = ["weather"]


def weather(city: str) -> str:
    """Today's weather in a city."""
    return f"sunny in {city}"
