"""Thread queries and maintenance upstream lacks: list threads, undo a failed turn."""

from __future__ import annotations

from dataclasses import dataclass

from psycopg import AsyncConnection
from psycopg.rows import DictRow
from psycopg_pool import AsyncConnectionPool

__all__ = [
    "ThreadSummary",
    "all_thread_ids",
    "discard_checkpoints_after",
    "discard_run",
    "list_threads",
    "pending_write_keys",
]

Pool = AsyncConnectionPool[AsyncConnection[DictRow]]


@dataclass(frozen=True)
class ThreadSummary:
    thread_id: str
    checkpoints: int
    last_checkpoint_id: str
    updated_at: str


async def all_thread_ids(pool: Pool) -> list[str]:
    """Every thread with a checkpoint (for maintenance that walks them all)."""
    async with pool.connection() as conn:
        rows = await (await conn.execute("SELECT DISTINCT thread_id FROM checkpoints ORDER BY 1")).fetchall()
    return [row["thread_id"] for row in rows]


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


WriteKey = tuple[str, int]


async def pending_write_keys(pool: Pool, thread_id: str, checkpoint_id: str | None) -> set[WriteKey]:
    """(task_id, idx) of the writes already saved on a checkpoint, to tell a failed run's own writes."""
    if checkpoint_id is None:
        return set()
    async with pool.connection() as conn:
        rows = await (
            await conn.execute(
                "SELECT task_id, idx FROM checkpoint_writes WHERE thread_id = %s AND checkpoint_id = %s",
                (thread_id, checkpoint_id),
            )
        ).fetchall()
    return {(row["task_id"], row["idx"]) for row in rows}


async def discard_run(pool: Pool, thread_id: str, head_id: str | None, head_writes: set[WriteKey]) -> None:
    """Undo a failed run: its checkpoints after `head_id`, and the writes it added to the head itself.

    Without the second part a bad resume value saved on the head would be replayed by every later resume.
    """
    await discard_checkpoints_after(pool, thread_id, head_id)
    if head_id is None:
        return
    added = await pending_write_keys(pool, thread_id, head_id) - head_writes
    async with pool.connection() as conn, conn.transaction():
        for task_id, idx in added:
            await conn.execute(
                "DELETE FROM checkpoint_writes WHERE thread_id = %s AND checkpoint_id = %s "
                "AND task_id = %s AND idx = %s",
                (thread_id, head_id, task_id, idx),
            )
