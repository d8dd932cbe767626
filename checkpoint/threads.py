"""Thread queries and maintenance upstream lacks: does a thread exist, undo a failed turn (listing:
checkpoint.thread_info)."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from langgraph.checkpoint.serde.types import INTERRUPT, RESUME
from psycopg.errors import UndefinedTable

from checkpoint.connections import Pool
from checkpoint.metadata import ASSISTANT_KEY, REVIEW_KEY, USER_KEY
from nodes.errors import UnknownCheckpoint, UnknownThread

__all__ = [
    "RUN_HEAD_SQL",
    "RunHead",
    "all_thread_ids",
    "discard_checkpoints_after",
    "discard_run",
    "pending_write_keys",
    "read_run_head",
    "require_thread",
    "resolve_checkpoint",
    "run_head_of",
    "thread_exists",
    "unknown_checkpoint",
]


async def all_thread_ids(pool: Pool) -> list[str]:
    """Every thread with a checkpoint (for maintenance that walks them all)."""
    async with pool.connection() as conn:
        rows = await (await conn.execute("SELECT DISTINCT thread_id FROM checkpoints ORDER BY 1")).fetchall()
    return [row["thread_id"] for row in rows]


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


@dataclass(frozen=True)
class RunHead:
    """A thread's latest checkpoint as a run finds it: what to undo back to if the run fails."""

    checkpoint_id: str | None
    write_keys: set[WriteKey] = field(default_factory=set)
    """Writes already saved on the head: a failed run's own writes are the others."""
    user_id: str | None = None
    review_memory: bool | None = None
    assistant: str | None = None
    """The user, review setting and assistant of the thread's newest run that stamped them."""
    interrupted: bool = False
    """The head holds an interrupt not yet answered (a cheap, conservative look: confirm with the state)."""


RUN_HEAD_SQL = f"""
    WITH head AS (
        SELECT checkpoint_id FROM checkpoints
        WHERE thread_id = %(thread)s AND checkpoint_ns = ''
        ORDER BY checkpoint_id DESC LIMIT 1
    ), stamped AS (
        SELECT metadata ->> '{USER_KEY}' AS user_id, metadata ->> '{REVIEW_KEY}' AS review,
               metadata ->> '{ASSISTANT_KEY}' AS assistant
        FROM checkpoints
        WHERE thread_id = %(thread)s AND checkpoint_ns = '' AND metadata ? '{USER_KEY}'
        ORDER BY checkpoint_id DESC LIMIT 1
    )
    SELECT head.checkpoint_id, stamped.user_id, stamped.review, stamped.assistant, w.task_id, w.idx, w.channel
    FROM (SELECT 1) AS one
    LEFT JOIN head ON true
    LEFT JOIN stamped ON true
    LEFT JOIN checkpoint_writes w
      ON w.thread_id = %(thread)s AND w.checkpoint_ns = '' AND w.checkpoint_id = head.checkpoint_id
"""


async def read_run_head(pool: Pool, thread_id: str) -> RunHead:
    """The thread's head, the writes saved on it and its stamped user, in one statement."""
    async with pool.connection() as conn:
        return run_head_of(await (await conn.execute(RUN_HEAD_SQL, {"thread": thread_id})).fetchall())


def run_head_of(rows: Sequence[Mapping[str, Any]]) -> RunHead:
    """The RunHead in RUN_HEAD_SQL's rows (read alone, or with the thread lock: checkpoint.locks)."""
    first = rows[0]
    writes = {(row["task_id"], row["idx"]) for row in rows if row["task_id"] is not None}
    channels = {row["channel"] for row in rows if row["channel"] is not None}
    review = first["review"]
    return RunHead(
        checkpoint_id=first["checkpoint_id"],
        write_keys=writes,
        user_id=first["user_id"] or None,
        review_memory=None if review is None else review == "true",
        assistant=first["assistant"] or None,
        interrupted=INTERRUPT in channels and RESUME not in channels,
    )


_LIKE_SPECIALS = str.maketrans({"\\": "\\\\", "%": "\\%", "_": "\\_"})

_THREAD_EXISTS_SQL = """
    SELECT EXISTS (SELECT 1 FROM checkpoints WHERE thread_id = %(thread)s)
        OR (to_regclass('convomem_transcript') IS NOT NULL
            AND EXISTS (SELECT 1 FROM convomem_transcript WHERE thread_id = %(thread)s)) AS found
"""


async def thread_exists(pool: Pool, thread_id: str) -> bool:
    """A thread exists once it has a checkpoint or an archived message (pruned threads keep the latter)."""
    async with pool.connection() as conn:
        try:
            row = await (await conn.execute(_THREAD_EXISTS_SQL, {"thread": thread_id})).fetchone()
        except UndefinedTable:  # a database setup never ran on has no threads
            return False
    return bool(row and row["found"])


async def require_thread(pool: Pool, thread_id: str) -> None:
    """UnknownThread unless the thread exists: commands on a thread id nobody used fail instead of
    answering with nothing."""
    if not await thread_exists(pool, thread_id):
        raise UnknownThread(f"No thread {thread_id!r}: `convomem threads` lists the threads there are.")


def unknown_checkpoint(thread_id: str, checkpoint_id: str) -> UnknownCheckpoint:
    """The one wording of "no such checkpoint", on every path (the CLI's prefixes, the server's ids)."""
    return UnknownCheckpoint(
        f"No checkpoint of thread {thread_id!r} starts with {checkpoint_id[:64]!r}: "
        f"`convomem history --thread {thread_id}` lists them."
    )


async def resolve_checkpoint(pool: Pool, thread_id: str, prefix: str) -> str:
    """The full id of the thread's one checkpoint whose id starts with `prefix` (a whole id works too).

    The prefix is matched literally (LIKE wildcards escaped); an unknown or ambiguous one is an
    UnknownCheckpoint saying what to do.
    """
    wanted = prefix.strip()
    if not wanted:
        raise UnknownCheckpoint("Give a checkpoint id or its first characters: see `convomem history`.")
    await require_thread(pool, thread_id)
    query = """
        SELECT DISTINCT checkpoint_id FROM checkpoints
        WHERE thread_id = %s AND checkpoint_ns = '' AND checkpoint_id LIKE %s || '%%' ESCAPE '\\'
        ORDER BY checkpoint_id LIMIT 3
    """
    async with pool.connection() as conn:
        rows = await (await conn.execute(query, (thread_id, wanted.translate(_LIKE_SPECIALS)))).fetchall()
    found = [row["checkpoint_id"] for row in rows]
    if len(found) == 1:
        return str(found[0])
    history = f"`convomem history --thread {thread_id}` lists them"
    if not found:
        raise unknown_checkpoint(thread_id, wanted)
    raise UnknownCheckpoint(
        f"Checkpoint prefix {wanted!r} matches several checkpoints of thread {thread_id!r} "
        f"({', '.join(found[:2])}, ...): give more characters ({history})."
    )
