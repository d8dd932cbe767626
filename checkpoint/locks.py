"""One writer per thread across processes: Postgres advisory locks keyed by thread id."""

from __future__ import annotations

import hashlib

from psycopg import AsyncConnection
from psycopg.rows import DictRow
from psycopg_pool import AsyncConnectionPool

__all__ = ["is_thread_busy", "thread_lock_key"]

Pool = AsyncConnectionPool[AsyncConnection[DictRow]]
LOCK_NAMESPACE = 0x636D  # "cm": keeps our keys apart from other users of advisory locks


def thread_lock_key(thread_id: str) -> int:
    """A stable signed 32-bit key for the thread (pg_advisory_lock(int, int) with LOCK_NAMESPACE)."""
    digest = hashlib.blake2b(thread_id.encode(), digest_size=4).digest()
    return int.from_bytes(digest, "big", signed=True)


async def is_thread_busy(pool: Pool, thread_id: str) -> bool:
    """True while some session, in any process, holds the thread's run lock."""
    async with pool.connection() as conn:
        row = await (
            await conn.execute(
                "SELECT EXISTS (SELECT 1 FROM pg_locks WHERE locktype = 'advisory' AND granted "
                "AND classid = %s::oid AND objid = (%s::int)::oid AND objsubid = 2) AS busy",
                (LOCK_NAMESPACE, thread_lock_key(thread_id)),
            )
        ).fetchone()
    return bool(row and row["busy"])
