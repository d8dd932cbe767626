"""Where this process's Postgres is and how it is opened: one decision from Settings for API, CLI, server."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from checkpoint.embedded import start_embedded
from checkpoint.persistence import Persistence, open_persistence
from graphs.models import embedding_index
from graphs.settings import Settings

__all__ = ["database_url", "open_database"]


async def database_url(settings: Settings) -> str:
    """DATABASE_URL, or the embedded server (started off the event loop: LangGraph Server watches it)."""
    if settings.database_url:
        return settings.database_url
    return await asyncio.to_thread(start_embedded, settings.data_dir)


@asynccontextmanager
async def open_database(settings: Settings, *, setup: bool = True) -> AsyncIterator[Persistence]:
    """Pool, checkpointer and store (with the configured encryption key and, when an embedding model is
    configured, a pgvector index); `setup` runs all migrations."""
    url = await database_url(settings)
    index = embedding_index(settings)
    async with open_persistence(
        url, setup=setup, encryption_key=settings.encryption_key, index=index
    ) as persistence:
        yield persistence
