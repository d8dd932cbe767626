"""convomem's checkpointer: upstream's AsyncPostgresSaver plus what it lacks."""

from __future__ import annotations

from langgraph.checkpoint.postgres.aio import AsyncPostgresSaver

__all__ = ["ConvomemSaver"]


class ConvomemSaver(AsyncPostgresSaver):
    """AsyncPostgresSaver, subclassed only to add what upstream lacks (nothing is rewritten)."""
