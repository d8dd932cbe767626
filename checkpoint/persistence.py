"""Open the pool, checkpointer and store together; one explicit, idempotent setup step for all DDL."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from typing import Any

from langgraph.store.postgres.aio import AsyncPostgresStore
from langgraph.store.postgres.base import PostgresIndexConfig
from pydantic import SecretStr

from checkpoint.migrations import apply_migrations
from checkpoint.pool import Pool, describe_url, open_pool
from checkpoint.saver import ConvomemSaver
from checkpoint.serde import make_serializer

__all__ = ["Persistence", "Pool", "describe_url", "open_persistence", "open_pool", "setup_database"]


@dataclass(frozen=True)
class Persistence:
    """The three things every graph run needs from Postgres, sharing one pool."""

    pool: Pool
    checkpointer: ConvomemSaver
    store: AsyncPostgresStore


async def setup_database(persistence: Persistence) -> None:
    """Create or migrate every table convomem uses; safe to run any number of times.

    Upstream's tables first: convomem's own migrations index and extend them.
    """

    async def upstream() -> None:
        await persistence.checkpointer.setup()
        await persistence.store.setup()

    await apply_migrations(persistence.pool, upstream=upstream)


@asynccontextmanager
async def open_persistence(
    url: str,
    *,
    setup: bool = True,
    encryption_key: SecretStr | None = None,
    index: PostgresIndexConfig | None = None,
    **pool_options: Any,
) -> AsyncIterator[Persistence]:
    """`index` gives the store a pgvector index (semantic search over the fields it names)."""
    async with open_pool(url, **pool_options) as pool:
        persistence = Persistence(
            pool=pool,
            checkpointer=ConvomemSaver(pool, serde=make_serializer(encryption_key=encryption_key)),
            store=AsyncPostgresStore(pool, index=index),
        )
        try:
            if setup:
                await setup_database(persistence)
            yield persistence
        finally:
            await _stop_batch_task(persistence.store)


async def _stop_batch_task(store: AsyncPostgresStore) -> None:
    """End the store's background batching task with the pool, instead of leaving it to the garbage
    collector (which logs "Task was destroyed but it is pending" when the loop closes first)."""
    # Upstream detail: AsyncBatchedBaseStore keeps that task in the private `_task` (made in
    # `_ensure_task`); pinned by tests/unit/test_upstream_pins.py::test_store_keeps_its_batch_task_in_task
    # and tests/integration/test_upstream_pins.py::test_stopping_the_store_task_ends_it.
    task = getattr(store, "_task", None)
    if isinstance(task, asyncio.Task) and not task.done():
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)
