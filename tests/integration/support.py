"""Helpers shared by the integration tests: row probes on the test database and request inspection."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import psycopg

from checkpoint.locks import LOCK_NAMESPACE, thread_lock_key
from graphs.api import TurnEnded, TurnEvent

__all__ = [
    "assert_linear_history",
    "checkpoint_count",
    "checkpoint_ids",
    "checkpoint_run_ids",
    "finish",
    "lock_sessions",
    "message_texts",
    "orphan_writes",
    "rows",
    "system_prompt",
    "transcript_rows",
]


def rows(url: str, query: str, params: tuple[Any, ...] = ()) -> list[tuple[Any, ...]]:
    with psycopg.connect(url, autocommit=True) as conn:
        return conn.execute(query, params).fetchall()


def checkpoint_ids(url: str, thread_id: str) -> list[str]:
    """Every checkpoint id of the thread (all namespaces), oldest first."""
    found = rows(
        url,
        "SELECT checkpoint_id FROM checkpoints WHERE thread_id = %s ORDER BY checkpoint_ns, checkpoint_id",
        (thread_id,),
    )
    return [row[0] for row in found]


def checkpoint_count(url: str, thread_id: str) -> int:
    return int(rows(url, "SELECT count(*) FROM checkpoints WHERE thread_id = %s", (thread_id,))[0][0])


async def finish(events: AsyncIterator[TurnEvent]) -> TurnEnded:
    """Drain a streamed run and return its TurnEnded (there is exactly one, last)."""
    ended = [event async for event in events if isinstance(event, TurnEnded)]
    assert len(ended) == 1
    return ended[0]


def message_texts(messages: list[dict[str, Any]] | list[Any], role: str | None = None) -> list[str]:
    """Contents of chat messages (request dicts or LangChain messages), optionally of one role."""
    texts = []
    for message in messages:
        if isinstance(message, dict):
            if role is None or message.get("role") == role:
                content = message.get("content")
                texts.append(content if isinstance(content, str) else str(content))
        elif role is None or message.type == role:
            texts.append(message.text)
    return texts


def system_prompt(request: dict[str, Any]) -> str:
    """The system message of a recorded chat request."""
    first = request["messages"][0]
    assert first["role"] in ("system", "developer")
    return str(first["content"])


def assert_linear_history(url: str, thread_id: str) -> list[str]:
    """The thread's checkpoints form one chain, each the parent of the next (one writer, no fork);
    returns their ids, oldest first."""
    chain = rows(
        url,
        "SELECT checkpoint_id, parent_checkpoint_id FROM checkpoints WHERE thread_id = %s "
        "AND checkpoint_ns = '' ORDER BY checkpoint_id",
        (thread_id,),
    )
    ids = [row[0] for row in chain]
    assert ids, f"thread {thread_id!r} has no checkpoints"
    assert [row[1] for row in chain] == [None, *ids[:-1]], f"history is not one chain: {chain}"
    return ids


def checkpoint_run_ids(url: str, thread_id: str) -> list[str | None]:
    """The metadata run_id of each of the thread's checkpoints, oldest first."""
    found = rows(
        url,
        "SELECT metadata ->> 'run_id' FROM checkpoints WHERE thread_id = %s AND checkpoint_ns = '' "
        "ORDER BY checkpoint_id",
        (thread_id,),
    )
    return [row[0] for row in found]


def orphan_writes(url: str, thread_id: str) -> int:
    """Pending writes whose checkpoint is gone (a run undone by halves would leave some)."""
    found = rows(
        url,
        "SELECT count(*) FROM checkpoint_writes w WHERE w.thread_id = %s AND NOT EXISTS (SELECT 1 FROM "
        "checkpoints c WHERE c.thread_id = w.thread_id AND c.checkpoint_ns = w.checkpoint_ns "
        "AND c.checkpoint_id = w.checkpoint_id)",
        (thread_id,),
    )
    return int(found[0][0])


def lock_sessions(url: str, thread_id: str, *, granted: bool = True) -> int:
    """Sessions holding (granted) or queued for (not granted) the thread's run lock."""
    found = rows(
        url,
        "SELECT count(*) FROM pg_locks WHERE locktype = 'advisory' AND granted = %s AND classid = %s::oid "
        "AND objid = (%s::int)::oid AND objsubid = 2",
        (granted, LOCK_NAMESPACE, thread_lock_key(thread_id)),
    )
    return int(found[0][0])


def transcript_rows(url: str, thread_id: str | None = None) -> int:
    """Rows of the transcript table, of one thread or all."""
    found = rows(
        url,
        "SELECT count(*) FROM convomem_transcript WHERE %s::text IS NULL OR thread_id = %s",
        (thread_id, thread_id),
    )
    return int(found[0][0])
