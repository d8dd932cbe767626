"""reduce_history: archive the working set to the transcript, remove what summarize folded, compact."""

from __future__ import annotations

import logging
from collections.abc import Sequence
from typing import Protocol

from langchain_core.messages import AnyMessage, RemoveMessage
from langgraph.runtime import Runtime

from nodes.state import Context, Node, State, Update, memory_user

_log = logging.getLogger("convomem.reduce_history")

__all__ = ["Archive", "Compact", "make_reduce_history"]


class Archive(Protocol):
    """Keeps messages for good (checkpoint.transcript in production); idempotent by message id, so the
    same messages archived again, on every turn or by a re-run after a crash, are stored once. `summary`
    (the thread's running summary, empty before the first fold) lets it title the thread."""

    async def __call__(
        self, thread_id: str, user_id: str, messages: Sequence[AnyMessage], summary: str = ""
    ) -> None: ...


class Compact(Protocol):
    """Drops the step checkpoints of a thread's older turns (checkpoint.compaction in production)."""

    async def __call__(self, thread_id: str) -> None: ...


def make_reduce_history(
    archive: Archive | None = None, *, compact: Compact | None = None, compact_every: int = 0
) -> Node:
    """Without `archive` folded messages are only dropped (unit tests, graphs compiled without one).

    With `compact`, every `compact_every`-th turn of a thread (counted in state's `turns`) ends by
    compacting the thread, on every path that runs the graph (API, CLI, LangGraph Server).
    """

    async def reduce_history(state: State, runtime: Runtime[Context]) -> Update:
        """Archive the whole working set, then RemoveMessage for every folded id still present.

        Archiving everything, not just what folds, also covers messages that state edits added. When
        archiving fails nothing is removed and the turn still completes (the user has seen the reply):
        the folded ids stay in `summarized_ids`, and the next turn archives, then removes them. A re-run
        removes nothing twice. Compaction failing costs only the saving, never the turn.
        """
        messages = state["messages"]
        thread_id = runtime.execution_info.thread_id if runtime.execution_info else None
        turns = int(state.get("turns") or 0) + 1
        update: Update = {"turns": turns}
        if compact is not None and thread_id and compact_every and turns % compact_every == 0:
            try:
                await compact(thread_id)
            except Exception as error:
                _log.warning("compaction of thread %r skipped: %s", thread_id, error)
        if archive is not None and messages and thread_id:
            try:
                await archive(thread_id, memory_user(state, runtime), messages, state.get("summary") or "")
            except Exception as error:
                _log.warning("transcript archive failed, nothing leaves the working set this turn: %s", error)
                return update
        folded = set(state.get("summarized_ids") or [])
        if not folded:
            return update
        present = [m.id for m in messages if m.id in folded]
        return {**update, "messages": [RemoveMessage(id=i) for i in present if i], "summarized_ids": []}

    return reduce_history
