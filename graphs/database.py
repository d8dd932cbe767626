"""Where this process's Postgres is and how it is opened: one decision from Settings for API, CLI, server."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import TYPE_CHECKING

from checkpoint.embedded import start_embedded
from checkpoint.pool import Pool, open_pool
from graphs.settings import Settings

if TYPE_CHECKING:
    from checkpoint.persistence import Persistence

__all__ = ["database_url", "open_database", "open_database_pool"]

# The checkpointer, store and models are imported by the functions that need them: commands that only
# query tables (threads, db status) open a bare pool without loading LangGraph or LangChain.


async def database_url(settings: Settings) -> str:
    """DATABASE_URL, or the embedded server (started off the event loop: LangGraph Server watches it)."""
    if settings.database_url:
        return settings.database_url
    return await asyncio.to_thread(start_embedded, settings.data_dir)


@asynccontextmanager
async def open_database(settings: Settings, *, setup: bool = True) -> AsyncIterator[Persistence]:
    """Pool, checkpointer and store (with the configured encryption key and, when an embedding model is
    configured, a pgvector index); `setup` runs all migrations."""
    from checkpoint.persistence import open_persistence

    url = await database_url(settings)
    index = None
    if settings.embedding_model:  # the model clients load only when used (a listing answers sooner)
        from graphs.models import embedding_index

        index = embedding_index(settings)
    async with open_persistence(
        url, setup=setup, encryption_key=settings.encryption_key, index=index
    ) as persistence:
        yield persistence


@asynccontextmanager
async def open_database_pool(settings: Settings) -> AsyncIterator[Pool]:
    """Only a pool on the configured database, for commands that read project and checkpoint tables."""
    async with open_pool(await database_url(settings), max_size=2) as pool:
        yield pool
