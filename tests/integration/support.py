"""Helpers shared by the integration tests: row probes on the test database and request inspection."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import psycopg

from graphs.api import TurnEnded, TurnEvent

__all__ = ["checkpoint_count", "checkpoint_ids", "finish", "message_texts", "rows", "system_prompt"]


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
