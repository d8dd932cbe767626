"""The Python API's thread half: list, archive, delete, export and import conversations."""

from __future__ import annotations

import json
from typing import Any

from checkpoint.ids import validate_id
from checkpoint.thread_info import (
    ThreadDeleted,
    ThreadInfo,
    delete_thread,
    list_thread_infos,
    new_thread_id,
    read_thread_info,
    set_thread_status,
)
from graphs.memory_api import MemoryApi
from graphs.thread_admin import ThreadExport, export_thread, import_thread, read_export
from graphs.turn_graph import TurnGraph

__all__ = ["ThreadApi", "ThreadDeleted", "ThreadExport", "ThreadInfo"]


class ThreadApi(MemoryApi):
    """Conversation management on the graph's database (Convomem sets `graph`)."""

    graph: TurnGraph

    async def threads(
        self,
        *,
        user: str | None = None,
        search: str | None = None,
        status: str = "active",
        limit: int = 100,
    ) -> list[ThreadInfo]:
        """Threads most recently updated first: `user`'s only, titles containing `search`, and `status`
        active (default), archived or all."""
        return await list_thread_infos(
            self.persistence.pool, user_id=user, search=search, status=status, limit=limit
        )

    async def thread(self, thread_id: str) -> ThreadInfo | None:
        """One thread's row (user, title, status, times, messages); None when it has none."""
        return await read_thread_info(self.persistence.pool, validate_id(thread_id))

    @staticmethod
    def new_thread() -> str:
        """A fresh thread id; the thread exists once a message is sent on it."""
        return new_thread_id()

    async def archive_thread(self, thread_id: str, *, archived: bool = True) -> None:
        """Hide a thread from `threads()` (archived=False shows it again; so does a new message)."""
        await set_thread_status(self.persistence.pool, thread_id, "archived" if archived else "active")

    async def delete_thread(self, thread_id: str, *, with_transcript: bool) -> ThreadDeleted:
        """Delete a thread's checkpoints and row, and its transcript when `with_transcript`; ThreadBusy
        while a run holds it. The user's long-term memory stays."""
        pool, saver = self.persistence.pool, self.persistence.checkpointer
        return await delete_thread(pool, saver, thread_id, with_transcript=with_transcript)

    async def export_thread(self, thread_id: str) -> dict[str, Any]:
        """The thread as a JSON-ready document (row, newest state, transcript); not the user's memory."""
        return await export_thread(self.persistence, self.graph, thread_id)

    async def import_thread(
        self, document: ThreadExport | dict[str, Any] | str, *, thread_id: str | None = None
    ) -> str:
        """Create a thread from an export (its JSON text, dict or model), as `thread_id` or the exported
        id; an existing id is refused. Returns the id; the conversation continues from there."""
        if isinstance(document, dict):
            document = read_export(json.dumps(document))
        elif isinstance(document, str):
            document = read_export(document)
        return await import_thread(self.persistence, self.graph, self.archive, document, thread_id)
