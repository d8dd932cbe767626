"""Reading a thread the same way whatever path wrote it: the Python API's state, history, transcript and
entities on the same database, and SQL rows."""

from __future__ import annotations

import asyncio
import inspect
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any

from checkpoint.transcript import TranscriptEntry
from graphs.api import CheckpointInfo, Convomem
from nodes.namespaces import user_prefix
from tests.e2e.cli_support import ThreadRows, thread_rows
from tests.integration.support import lock_sessions, rows

__all__ = ["Probe", "ThreadView", "eventually"]

FINGERPRINTED = {
    "checkpoints": "thread_id, checkpoint_ns, checkpoint_id",
    "checkpoint_writes": "thread_id, checkpoint_ns, checkpoint_id, task_id, idx::text",
    "checkpoint_blobs": "thread_id, checkpoint_ns, channel, version",
    "store": "prefix, key, updated_at::text",
    "convomem_transcript": "thread_id, message_id",
}
"""Every table a turn writes, with the columns that tell its rows apart (and a store row's last write)."""


@dataclass(frozen=True)
class Message:
    type: str
    id: str
    text: str


@dataclass(frozen=True)
class ThreadView:
    """What a thread holds, in plain values that compare across paths."""

    messages: tuple[Message, ...]
    next: tuple[str, ...]
    summary: str | None
    checkpoint_id: str | None
    interrupts: tuple[Any, ...]

    @property
    def types(self) -> list[str]:
        return [m.type for m in self.messages]

    @property
    def ids(self) -> list[str]:
        return [m.id for m in self.messages]

    def texts(self, type: str = "human") -> list[str]:
        return [m.text for m in self.messages if m.type == type]


async def eventually(
    condition: Callable[[], bool | Awaitable[bool]], *, what: str, timeout: float = 30.0
) -> None:
    """Poll `condition` (sync or async) until it holds; fail naming `what` after `timeout` seconds."""
    deadline = time.monotonic() + timeout
    while True:
        held = condition()
        if inspect.isawaitable(held):
            held = await held
        if held:
            return
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout:g}s waiting for: {what}")
        await asyncio.sleep(0.05)


@dataclass
class Probe:
    """The API opened on the scenario's database (the same handle the API path uses) plus its URL."""

    cm: Convomem
    url: str

    async def view(self, thread: str) -> ThreadView:
        snapshot = await self.cm.state(thread)
        messages = tuple(
            Message(m.type, str(m.id), str(m.text)) for m in snapshot.values.get("messages") or []
        )
        configurable = (snapshot.config or {}).get("configurable", {})
        return ThreadView(
            messages=messages,
            next=tuple(snapshot.next),
            summary=snapshot.values.get("summary") or None,
            checkpoint_id=configurable.get("checkpoint_id"),
            interrupts=tuple(i.value for i in snapshot.interrupts),
        )

    async def history(self, thread: str) -> list[CheckpointInfo]:
        return await self.cm.history(thread, limit=1000)

    async def transcript(self, thread: str) -> list[TranscriptEntry]:
        return await self.cm.transcript(thread)

    async def entities(self, user: str) -> list[str]:
        """`TYPE:value` of every entity remembered for the user, sorted."""
        return sorted(f"{e.type}:{e.value}" for e in await self.cm.entities(user))

    def rows(self, thread: str) -> ThreadRows:
        return thread_rows(self.url, thread)

    def fingerprint(self) -> dict[str, tuple[int, str]]:
        """Row count and a digest of the keys of every table a turn writes, in the whole database: equal
        before and after a request means it wrote (and deleted) nothing anywhere."""
        found = {}
        for table, columns in FINGERPRINTED.items():
            key = f"concat_ws('/', {columns})"
            [(count, digest)] = rows(
                self.url,
                f"SELECT count(*), coalesce(md5(string_agg({key}, ',' ORDER BY {key})), '') FROM {table}",
            )
            found[table] = (int(count), str(digest))
        return found

    def footprint(self, threads: tuple[str, ...], users: tuple[str, ...]) -> dict[str, list[str]]:
        """Every row naming these threads or users, by table: their checkpoints, pending writes, stored
        values, archived messages, and memories (store rows under each user's namespace)."""
        found = {}
        for table, columns in FINGERPRINTED.items():
            where, param = "thread_id = ANY(%s)", list(threads)
            if table == "store":
                where, param = "prefix LIKE ANY(%s)", [user_prefix(user) + "%" for user in users]
            key = f"concat_ws('/', {columns})"
            found[table] = [
                r[0] for r in rows(self.url, f"SELECT {key} FROM {table} WHERE {where} ORDER BY 1", (param,))
            ]
        return found

    def checkpoints_per_run(self, thread: str) -> list[int]:
        """How many checkpoints each run of the thread kept, oldest run first."""
        found = rows(
            self.url,
            "SELECT count(*) FROM checkpoints WHERE thread_id = %s AND checkpoint_ns = '' "
            "GROUP BY metadata ->> 'run_id' ORDER BY min(checkpoint_id)",
            (thread,),
        )
        return [int(row[0]) for row in found]

    def lock_holders(self, thread: str) -> int:
        """Sessions holding the thread's run lock (a killed process's goes when Postgres notices)."""
        return lock_sessions(self.url, thread)
