"""Moving one conversation: export a thread to a portable JSON document, import it on any database.

The document holds the thread's row (title, owner, status), the state of its newest checkpoint (working
set, running summary, turn count) and its whole transcript, as langchain-core message dicts. It does not
hold the user's long-term memory (entities, profile): that belongs to the user, not to one thread.
Import writes the transcript, then the state as if reduce_history had just ended a turn, so the next
message continues the conversation with its history and summary.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from datetime import datetime
from itertools import groupby
from typing import Any, Literal

from langchain_core.messages import AnyMessage, message_to_dict, messages_from_dict
from pydantic import BaseModel, ConfigDict, Field, ValidationError

from checkpoint.ids import validate_id, validate_user_id
from checkpoint.metadata import USER_KEY
from checkpoint.persistence import Persistence
from checkpoint.thread_info import delete_thread, read_thread_info, restore_thread_row
from checkpoint.threads import require_thread, thread_exists
from checkpoint.transcript import read_transcript
from graphs.turn_graph import TurnGraph
from graphs.turn_runner import thread_config
from nodes.errors import InvalidInput
from nodes.reduce_history import Archive

__all__ = ["EXPORT_FORMAT", "EXPORT_VERSION", "ThreadExport", "export_thread", "import_thread", "read_export"]

EXPORT_FORMAT = "convomem.thread"
EXPORT_VERSION = 1
KEPT_STATE = ("summary", "summarized_ids", "turns", "user_id", "review_memory")
"""State carried over besides the messages; the rest is recomputed by the next turn."""


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid")


class ExportedState(_Strict):
    messages: list[dict[str, Any]]
    summary: str = ""
    summarized_ids: list[str] = Field(default_factory=list)
    turns: int = Field(default=0, ge=0)
    user_id: str | None = None
    review_memory: bool | None = None


class ExportedEntry(_Strict):
    user_id: str
    created_at: datetime | None = None
    message: dict[str, Any]


class ThreadExport(_Strict):
    format: Literal["convomem.thread"]
    version: Literal[1]
    thread_id: str
    user_id: str
    title: str = ""
    status: Literal["active", "archived"] = "active"
    created_at: datetime | None = None
    state: ExportedState
    transcript: list[ExportedEntry]


async def export_thread(persistence: Persistence, graph: TurnGraph, thread_id: str) -> dict[str, Any]:
    """The thread as a JSON-ready dict (ThreadExport's shape); UnknownThread when there is none."""
    await require_thread(persistence.pool, validate_id(thread_id))
    info = await read_thread_info(persistence.pool, thread_id)
    snapshot = await graph.aget_state(thread_config(thread_id))
    values = snapshot.values or {}
    entries = await read_transcript(persistence.pool, thread_id)
    owner = (info.user_id if info else None) or values.get("user_id") or _first_user(entries)
    state = {key: values[key] for key in KEPT_STATE if values.get(key) is not None}
    document = ThreadExport(
        format=EXPORT_FORMAT,
        version=EXPORT_VERSION,
        thread_id=thread_id,
        user_id=owner or "",
        title=info.title if info else "",
        status="archived" if info and info.status == "archived" else "active",
        created_at=datetime.fromisoformat(info.created_at) if info and info.created_at else None,
        state=ExportedState(messages=[message_to_dict(m) for m in values.get("messages", [])], **state),
        transcript=[
            ExportedEntry(user_id=e.user_id, created_at=e.created_at, message=message_to_dict(e.message))
            for e in entries
        ],
    )
    return document.model_dump(mode="json")


def read_export(text: str) -> ThreadExport:
    """The document in `text`, checked; InvalidInput naming the first thing wrong with it."""
    try:
        raw = json.loads(text)
    except ValueError as error:
        raise InvalidInput(f"The export file is not JSON: {error}.") from None
    try:
        document = ThreadExport.model_validate(raw)
    except ValidationError as error:
        first = error.errors()[0]
        where = ".".join(map(str, first["loc"])) or "document"
        raise InvalidInput(f"Invalid export file: {where}: {first['msg']}.") from None
    validate_id(document.thread_id)
    if document.user_id:
        validate_user_id(document.user_id)
    _messages(document.state.messages, "state.messages")
    _messages([e.message for e in document.transcript], "transcript")
    return document


async def import_thread(
    persistence: Persistence,
    graph: TurnGraph,
    archive: Archive,
    document: ThreadExport,
    thread_id: str | None = None,
) -> str:
    """Create the thread `document` describes, as `thread_id` (default: the exported id); returns the id.

    An existing thread id is refused. A failure part-way deletes what was written.
    """
    target = validate_id(thread_id or document.thread_id)
    if await thread_exists(persistence.pool, target):
        raise InvalidInput(
            f"Thread {target!r} already exists: import under another id with --thread NEW_ID "
            "(or thread_id= in Python)."
        )
    try:
        await _write(persistence, graph, archive, document, target)
    except BaseException:
        if await thread_exists(persistence.pool, target):
            await delete_thread(persistence.pool, persistence.checkpointer, target, with_transcript=True)
        raise
    return target


async def _write(
    persistence: Persistence, graph: TurnGraph, archive: Archive, document: ThreadExport, target: str
) -> None:
    for user_id, group in groupby(document.transcript, key=lambda e: e.user_id):
        await archive(target, validate_user_id(user_id), _messages([e.message for e in group], "transcript"))
    values: dict[str, Any] = document.state.model_dump(exclude_none=True)
    values["messages"] = _messages(document.state.messages, "state.messages")
    if values["messages"] or len(values) > 1:
        # The file was checked above; a caller's state edit (a fork) may only add one user message, so
        # the rules are left out here. The user is stamped as a run stamps it: the next turn, a resume
        # and `forget --user` find the thread's owner.
        config = thread_config(target)
        if document.user_id:
            config["metadata"] = {USER_KEY: document.user_id}
        plain = graph.copy(update={"rules": None})
        await plain.aupdate_state(config, values, as_node="reduce_history")
    await restore_thread_row(
        persistence.pool,
        target,
        user_id=document.user_id,
        title=document.title,
        status=document.status,
        created_at=document.created_at,
    )


def _messages(dicts: Sequence[dict[str, Any]], where: str) -> list[AnyMessage]:
    try:
        return list(messages_from_dict(list(dicts)))  # type: ignore[arg-type]
    except (KeyError, TypeError, ValueError) as error:
        raise InvalidInput(f"Invalid export file: {where}: not a message ({error}).") from None


def _first_user(entries: Sequence[Any]) -> str | None:
    return entries[0].user_id if entries else None
