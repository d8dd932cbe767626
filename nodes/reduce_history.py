"""reduce_history: archive the working set to the transcript, then remove what summarize folded."""

from __future__ import annotations

import logging
from collections.abc import Sequence
from typing import Protocol

from langchain_core.messages import AnyMessage, RemoveMessage
from langgraph.config import get_config
from langgraph.runtime import Runtime

from nodes.state import Context, Node, State, Update, memory_user

_log = logging.getLogger("convomem.reduce_history")

__all__ = ["Archive", "make_reduce_history"]


class Archive(Protocol):
    """Keeps messages for good (checkpoint.transcript in production); idempotent by message id, so the
    same messages archived again, on every turn or by a re-run after a crash, are stored once."""

    async def __call__(self, thread_id: str, user_id: str, messages: Sequence[AnyMessage]) -> None: ...


def make_reduce_history(archive: Archive | None = None) -> Node:
    """Without `archive` folded messages are only dropped (unit tests, graphs compiled without one)."""

    async def reduce_history(state: State, runtime: Runtime[Context]) -> Update:
        """Archive the whole working set, then RemoveMessage for every folded id still present.

        Archiving everything, not just what folds, also covers messages that state edits added. When
        archiving fails nothing is removed and the turn still completes (the user has seen the reply):
        the folded ids stay in `summarized_ids`, and the next turn archives, then removes them. A re-run
        removes nothing twice.
        """
        messages = state["messages"]
        if archive is not None and messages:
            thread_id = str(get_config()["configurable"]["thread_id"])
            try:
                await archive(thread_id, memory_user(state, runtime), messages)
            except Exception as error:
                _log.warning("transcript archive failed, nothing leaves the working set this turn: %s", error)
                return {}
        folded = set(state.get("summarized_ids") or [])
        if not folded:
            return {}
        present = [m.id for m in messages if m.id in folded]
        return {"messages": [RemoveMessage(id=i) for i in present if i], "summarized_ids": []}

    return reduce_history
