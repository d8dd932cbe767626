"""What langgraph.json names besides the graph: our Postgres checkpointer and store, and the HTTP app.

langgraph-api enters each factory once at start-up and exits it at shutdown. It loads this file once per
entry, so each factory opens its own small pool rather than sharing module state.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from langgraph.checkpoint.postgres.aio import AsyncPostgresSaver
from langgraph.store.postgres.aio import AsyncPostgresStore
from starlette.applications import Starlette

from graphs.database import open_database
from graphs.http_errors import convomem_error_response
from graphs.settings import Settings
from nodes.errors import ConvomemError

__all__ = ["app", "checkpointer", "store"]


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


app = Starlette(exception_handlers={ConvomemError: convomem_error_response})
"""The custom HTTP app (langgraph.json `http.app`): its exception handler answers a ConvomemError the
graph raises during a request (a state edit that breaks the input rules) with its 4xx and message."""
