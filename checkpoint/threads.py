"""Thread queries and maintenance upstream lacks: list threads, undo a failed turn."""

from __future__ import annotations

from dataclasses import dataclass

from psycopg import AsyncConnection
from psycopg.rows import DictRow
from psycopg_pool import AsyncConnectionPool

__all__ = ["ThreadSummary", "discard_checkpoints_after", "list_threads"]

Pool = AsyncConnectionPool[AsyncConnection[DictRow]]


@dataclass(frozen=True)
class ThreadSummary:
    thread_id: str
    checkpoints: int
    last_checkpoint_id: str
    updated_at: str


async def list_threads(pool: Pool, *, limit: int = 100) -> list[ThreadSummary]:
    """Threads with their newest checkpoint, most recently active first."""
    query = """
        SELECT thread_id, count(*) AS checkpoints, max(checkpoint_id) AS last_checkpoint_id,
               max(checkpoint->>'ts') AS updated_at
        FROM checkpoints WHERE checkpoint_ns = ''
        GROUP BY thread_id ORDER BY max(checkpoint_id) DESC LIMIT %s
    """
    async with pool.connection() as conn:
        rows = await (await conn.execute(query, (limit,))).fetchall()
    return [ThreadSummary(**row) for row in rows]


async def discard_checkpoints_after(pool: Pool, thread_id: str, checkpoint_id: str | None) -> int:
    """Delete the thread's checkpoints and pending writes newer than `checkpoint_id` (all when None).

    Checkpoint ids are UUIDv6, so their text order is their time order (upstream relies on the same).
    Blobs are left: they are keyed by channel version and unreachable once their checkpoints are gone.
    Returns how many checkpoints were removed.
    """
    newer = "thread_id = %(thread)s AND (%(after)s::text IS NULL OR checkpoint_id > %(after)s)"
    params = {"thread": thread_id, "after": checkpoint_id}
    async with pool.connection() as conn, conn.transaction():
        await conn.execute(f"DELETE FROM checkpoint_writes WHERE {newer}", params)
        cursor = await conn.execute(f"DELETE FROM checkpoints WHERE {newer}", params)
        return cursor.rowcount
