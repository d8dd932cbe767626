"""What a run does when another run holds its thread: the choices, checked without loading psycopg (the
CLI checks --on-busy before anything starts)."""

from __future__ import annotations

from typing import Literal, cast, get_args

from nodes.errors import InvalidInput

__all__ = ["BUSY_TIMEOUT", "OnBusy", "check_on_busy"]

OnBusy = Literal["reject", "enqueue", "rollback", "interrupt"]
"""What a run does when another run holds its thread (LangGraph Server's double-texting strategies)."""
BUSY_TIMEOUT = 30.0
"""Seconds enqueue (and rollback/interrupt, while the running run stops) wait for the thread by default."""


def check_on_busy(value: str) -> OnBusy:
    """`value` as an OnBusy strategy, or InvalidInput naming the choices (for the CLI and API callers)."""
    if value in get_args(OnBusy):
        return cast(OnBusy, value)
    raise InvalidInput(f"Unknown on-busy strategy {value!r}: choose reject, enqueue, rollback or interrupt.")
