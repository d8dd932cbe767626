"""What a thread is, beyond its checkpoints: owner, title, status, times and message count.

The row lives in `convomem_threads` (migration 0006). reduce_history's transcript write upserts it in the
same statement (checkpoint.transcript), so it holds on every path that runs the graph (API, CLI, LangGraph
Server). Titles: the first human message, cut to TITLE_CHARS; once the thread has a running summary, the
summary's first sentence (refreshed with every turn, so it follows what the conversation became).
An archived thread is hidden from listings by default; a new message makes it active again.
"""

from __future__ import annotations

import re
import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import TYPE_CHECKING, Literal

from checkpoint.connections import Pool
from checkpoint.ids import validate_id, validate_user_id
from checkpoint.locks import try_thread_lock_in_transaction
from checkpoint.metadata import USER_KEY
from checkpoint.threads import require_thread
from nodes.errors import InvalidInput, ThreadBusy

if TYPE_CHECKING:  # `convomem threads` lists without loading LangChain
    from langchain_core.messages import AnyMessage

    from checkpoint.saver import ConvomemSaver

__all__ = [
    "THREADS_DDL",
    "TITLE_CHARS",
    "ThreadDeleted",
    "ThreadInfo",
    "ThreadStatus",
    "delete_thread",
    "list_thread_infos",
    "new_thread_id",
    "read_thread_info",
    "restore_thread_row",
    "set_thread_status",
    "thread_title",
    "title_of",
]

ThreadStatus = Literal["active", "archived"]
StatusFilter = Literal["active", "archived", "all"]
STATUS_FILTERS: tuple[str, ...] = ("active", "archived", "all")
TITLE_CHARS = 80

THREADS_DDL = (
    """
    CREATE TABLE IF NOT EXISTS convomem_threads (
        thread_id text PRIMARY KEY,
        user_id text NOT NULL DEFAULT '',
        title text NOT NULL DEFAULT '',
        status text NOT NULL DEFAULT 'active' CHECK (status IN ('active', 'archived')),
        created_at timestamptz NOT NULL DEFAULT now(),
        updated_at timestamptz NOT NULL DEFAULT now(),
        message_count integer NOT NULL DEFAULT 0
    )
    """,
    "CREATE INDEX IF NOT EXISTS convomem_threads_user_idx ON convomem_threads (user_id, updated_at DESC)",
    # Backfill: one row per thread already in the transcript, titled by its first human message.
    f"""
    INSERT INTO convomem_threads (thread_id, user_id, title, created_at, updated_at, message_count)
    SELECT t.thread_id,
        (array_agg(t.user_id ORDER BY t.position))[1],
        coalesce(left(regexp_replace(btrim((array_agg(t.content ORDER BY t.position)
            FILTER (WHERE t.role = 'human'))[1]), '\\s+', ' ', 'g'), {TITLE_CHARS}), ''),
        min(t.created_at), max(t.created_at), count(*)
    FROM convomem_transcript t GROUP BY t.thread_id
    ON CONFLICT (thread_id) DO NOTHING
    """,
)

UPSERT_SQL = """
    INSERT INTO convomem_threads AS t (thread_id, user_id, title, message_count)
    SELECT %(thread)s, %(user)s, %(title)s,
        (SELECT count(*) FROM convomem_transcript WHERE thread_id = %(thread)s)
        + (SELECT count(*) FROM inserted)
    ON CONFLICT (thread_id) DO UPDATE SET
        title = CASE WHEN %(refresh)s OR t.title = '' THEN EXCLUDED.title ELSE t.title END,
        message_count = t.message_count + (SELECT count(*) FROM inserted),
        updated_at = now(),
        status = 'active'
"""
"""Runs after the transcript insert, as the same statement (`inserted` is that insert's RETURNING): one
round trip per turn. A new row counts what the transcript held before plus what this call added."""

_LIST_SQL = """
    WITH cp AS (
        SELECT thread_id, count(*) AS checkpoints, max(checkpoint_id) AS last_checkpoint_id,
            max(checkpoint ->> 'ts') AS ts
        FROM checkpoints WHERE checkpoint_ns = '' GROUP BY thread_id
    )
    SELECT coalesce(t.thread_id, cp.thread_id) AS thread_id, coalesce(cp.checkpoints, 0) AS checkpoints,
        coalesce(cp.last_checkpoint_id, '') AS last_checkpoint_id, cp.ts, t.user_id, t.title,
        coalesce(t.status, 'active') AS status, t.created_at, t.updated_at,
        coalesce(t.message_count, 0) AS messages
    FROM convomem_threads t FULL JOIN cp ON cp.thread_id = t.thread_id
    WHERE (%(thread)s::text IS NULL OR coalesce(t.thread_id, cp.thread_id) = %(thread)s)
        AND (%(user)s::text IS NULL OR t.user_id = %(user)s)
        AND (%(search)s::text IS NULL OR t.title ILIKE %(search)s ESCAPE '\\')
        AND (%(status)s::text = 'all' OR coalesce(t.status, 'active') = %(status)s)
    ORDER BY coalesce(t.updated_at, (cp.ts)::timestamptz) DESC NULLS LAST, 1
    LIMIT %(limit)s
"""
_STATUS_SQL = f"""
    INSERT INTO convomem_threads AS t (thread_id, user_id, status)
    VALUES (%(thread)s, coalesce((
        SELECT metadata ->> '{USER_KEY}' FROM checkpoints
        WHERE thread_id = %(thread)s AND checkpoint_ns = '' AND metadata ? '{USER_KEY}'
        ORDER BY checkpoint_id DESC LIMIT 1), ''), %(status)s)
    ON CONFLICT (thread_id) DO UPDATE SET status = EXCLUDED.status
"""
_RESTORE_SQL = """
    INSERT INTO convomem_threads AS t (thread_id, user_id, title, status, created_at, message_count)
    VALUES (%(thread)s, %(user)s, %(title)s, %(status)s, coalesce(%(created)s, now()),
        (SELECT count(*) FROM convomem_transcript WHERE thread_id = %(thread)s))
    ON CONFLICT (thread_id) DO UPDATE SET user_id = EXCLUDED.user_id, title = EXCLUDED.title,
        status = EXCLUDED.status, created_at = EXCLUDED.created_at, message_count = EXCLUDED.message_count
"""
"""A thread that has checkpoints but no row yet (a turn never reached reduce_history) gets one."""
_LIKE_SPECIALS = str.maketrans({"\\": "\\\\", "%": "\\%", "_": "\\_"})
_SENTENCE_END = re.compile(r"(?<=[.!?])\s")


@dataclass(frozen=True)
class ThreadInfo:
    thread_id: str
    checkpoints: int
    last_checkpoint_id: str
    updated_at: str
    """ISO time of the thread's last change (its row, else its newest checkpoint)."""
    user_id: str | None
    title: str
    status: str
    created_at: str | None
    messages: int
    """Messages archived to the transcript (the whole conversation, summarized ones included)."""


@dataclass(frozen=True)
class ThreadDeleted:
    thread_id: str
    transcript_messages: int
    """Transcript rows deleted (0 when the transcript was kept)."""


def new_thread_id() -> str:
    """A fresh thread id: 12 hex characters of a random UUID (valid for validate_id)."""
    return uuid.uuid4().hex[:12]


def title_of(text: str) -> str:
    """`text` on one line, whitespace collapsed, cut to TITLE_CHARS (an ellipsis marks the cut)."""
    line = " ".join(text.split())
    return line if len(line) <= TITLE_CHARS else line[: TITLE_CHARS - 1].rstrip() + "…"


def thread_title(messages: Sequence[AnyMessage], summary: str = "") -> str:
    """The summary's first sentence when there is a summary, else the first human message of `messages`."""
    from nodes.tokens import text_of

    if summary.strip():
        return title_of(_SENTENCE_END.split(summary.strip(), maxsplit=1)[0])
    first = next((m for m in messages if m.type == "human"), None)
    return "" if first is None else title_of(text_of(first))


async def list_thread_infos(
    pool: Pool,
    *,
    user_id: str | None = None,
    search: str | None = None,
    status: str = "active",
    limit: int = 100,
    thread_id: str | None = None,
) -> list[ThreadInfo]:
    """Threads most recently updated first; `search` matches titles (case-insensitive, taken literally).

    Threads that have checkpoints but no row (older databases, turns cut short) are listed as active,
    without user or title, and only when neither `user_id` nor `search` filters.
    """
    if status not in STATUS_FILTERS:
        raise InvalidInput(f"Unknown thread status {status[:20]!r}: choose active, archived or all.")
    if search is not None and "\x00" in search:
        raise InvalidInput("The search text contains a NUL character (\\x00): remove it.")
    params = {
        "user": None if user_id is None else validate_user_id(user_id),
        "search": None if not search else f"%{search.translate(_LIKE_SPECIALS)}%",
        "status": status,
        "limit": limit,
        "thread": thread_id,
    }
    async with pool.connection() as conn:
        rows = await (await conn.execute(_LIST_SQL, params)).fetchall()
    return [
        ThreadInfo(
            thread_id=row["thread_id"],
            checkpoints=row["checkpoints"],
            last_checkpoint_id=row["last_checkpoint_id"],
            updated_at=_iso(row["updated_at"]) or row["ts"] or "",
            user_id=row["user_id"] or None,
            title=row["title"] or "",
            status=row["status"],
            created_at=_iso(row["created_at"]),
            messages=row["messages"],
        )
        for row in rows
    ]


async def read_thread_info(pool: Pool, thread_id: str) -> ThreadInfo | None:
    """One thread's listing entry (whatever its status), None when it has neither row nor checkpoint."""
    found = await list_thread_infos(pool, status="all", limit=1, thread_id=validate_id(thread_id))
    return found[0] if found else None


async def restore_thread_row(
    pool: Pool,
    thread_id: str,
    *,
    user_id: str,
    title: str,
    status: ThreadStatus,
    created_at: datetime | None,
) -> None:
    """Write an imported thread's row as exported (its count is what its transcript holds)."""
    async with pool.connection() as conn:
        await conn.execute(_RESTORE_SQL, {
            "thread": thread_id, "user": user_id, "title": title, "status": status, "created": created_at,
        })  # fmt: skip


async def set_thread_status(pool: Pool, thread_id: str, status: ThreadStatus) -> None:
    """Archive or re-activate a thread; UnknownThread when it does not exist."""
    await require_thread(pool, validate_id(thread_id))
    async with pool.connection() as conn:
        await conn.execute(_STATUS_SQL, {"thread": thread_id, "status": status})


async def delete_thread(
    pool: Pool, saver: ConvomemSaver, thread_id: str, *, with_transcript: bool
) -> ThreadDeleted:
    """Delete a thread: its checkpoints, writes and blobs, its row, and its transcript when asked.

    One transaction holding the thread's run lock: refused (ThreadBusy, nothing deleted) while a run holds
    the thread, and no run can start on it meanwhile. The user's long-term memory stays.
    """
    await require_thread(pool, validate_id(thread_id))
    async with pool.connection() as conn, conn.transaction():
        if not await try_thread_lock_in_transaction(conn, thread_id):
            raise ThreadBusy(
                f"Thread {thread_id!r} is running a turn: nothing was deleted; try again once it finishes."
            )
        removed = 0
        if with_transcript:
            cursor = await conn.execute("DELETE FROM convomem_transcript WHERE thread_id = %s", (thread_id,))
            removed = cursor.rowcount
        await conn.execute("DELETE FROM convomem_threads WHERE thread_id = %s", (thread_id,))
        await saver.bound_to(conn).adelete_thread(thread_id)
    return ThreadDeleted(thread_id, removed)


def _iso(value: datetime | None) -> str | None:
    return None if value is None else value.isoformat()
