"""Checkpointer and store factories named in langgraph.json: LangGraph Server keeps threads in our Postgres.

langgraph-api enters each factory once at start-up and exits it at shutdown. It loads this file once per
entry, so each factory opens its own small pool rather than sharing module state.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from langgraph.checkpoint.postgres.aio import AsyncPostgresSaver
from langgraph.store.postgres.aio import AsyncPostgresStore

from graphs.database import open_database
from graphs.settings import Settings

__all__ = ["checkpointer", "store"]


@asynccontextmanager
async def checkpointer() -> AsyncIterator[AsyncPostgresSaver]:
    """The Postgres checkpointer; runs the one setup step for every table."""
    async with open_database(Settings()) as persistence:
        yield persistence.checkpointer


@asynccontextmanager
async def store() -> AsyncIterator[AsyncPostgresStore]:
    """The Postgres store for long-term memory (`runtime.store` in the nodes)."""
    async with open_database(Settings()) as persistence:
        yield persistence.store
