"""One interface over every variant: send a user message, get the time to first token and to the end."""

from __future__ import annotations

import asyncio
import time
import uuid
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal, Protocol

from langchain_core.messages import AIMessageChunk, HumanMessage
from langgraph.graph.state import CompiledStateGraph
from langgraph.types import StateSnapshot

from bench.baselines import open_baseline
from bench.fake_model import FakeChatModel
from bench.langmem_recipe import open_recipe
from graphs.api import Convomem, ReplyToken, TurnEnded, open_convomem
from graphs.settings import Settings

__all__ = ["VARIANTS", "Driver", "TurnTiming", "Variant", "open_driver"]

Variant = Literal[
    "convomem", "convomem-locked", "convomem-async", "convomem-tools", "bare", "delta", "langmem"
]
VARIANTS: tuple[Variant, ...] = ("convomem", "bare", "delta", "langmem", "convomem-async", "convomem-tools")
"""`langmem` is the recipe a user assembles from LangMem (bench/langmem_recipe.py). convomem runs without
its built-in memory tools, as the baselines have none (the fake model calls a tool whenever it is given
one, so with tools every turn would use all its tool rounds); `convomem-tools` has them all.
`convomem-locked` is convomem with upstream's saver-wide asyncio lock put back (concurrency bench);
`convomem-async` runs with durability "async", LangGraph's default, which the baselines use: checkpoint
writes overlap the next step instead of being awaited (convomem's default is "sync")."""


@dataclass(frozen=True)
class TurnTiming:
    first_token: float
    total: float


class Driver(Protocol):
    model: FakeChatModel

    async def turn(self, thread_id: str, user_id: str, text: str) -> TurnTiming: ...

    async def message_ids(self, thread_id: str) -> list[str]:
        """Ids of the messages in the thread's current state."""
        ...


class ConvomemDriver:
    def __init__(self, cm: Convomem, model: FakeChatModel):
        self.cm = cm
        self.model = model

    async def turn(self, thread_id: str, user_id: str, text: str) -> TurnTiming:
        started = time.perf_counter()
        first: float | None = None
        ended = False
        async for event in self.cm.chat(thread_id, text, user_id=user_id):
            if first is None and isinstance(event, ReplyToken):
                first = time.perf_counter() - started
            ended = ended or (isinstance(event, TurnEnded) and not event.next_nodes)
        if not ended or first is None:
            raise RuntimeError(f"convomem turn on {thread_id} did not finish with a streamed reply")
        return TurnTiming(first, time.perf_counter() - started)

    async def message_ids(self, thread_id: str) -> list[str]:
        return _ids(await self.cm.state(thread_id))


class BaselineDriver:
    """`per_user`: the run names its user (`langgraph_user_id`, LangMem's namespace placeholder)."""

    def __init__(
        self, graph: CompiledStateGraph[Any, Any, Any, Any], model: FakeChatModel, *, per_user: bool = False
    ):
        self.graph = graph
        self.model = model
        self.per_user = per_user

    async def turn(self, thread_id: str, user_id: str, text: str) -> TurnTiming:
        started = time.perf_counter()
        first: float | None = None
        message = HumanMessage(content=text, id=str(uuid.uuid4()))
        config: Any = {"configurable": {"thread_id": thread_id}}
        if self.per_user:
            config["configurable"]["langgraph_user_id"] = user_id
        async for chunk, metadata in self.graph.astream(
            {"messages": [message]}, config, stream_mode="messages"
        ):
            if first is None and isinstance(chunk, AIMessageChunk) and chunk.text:
                first = time.perf_counter() - started
            del metadata
        if first is None:
            raise RuntimeError(f"baseline turn on {thread_id} streamed no reply")
        return TurnTiming(first, time.perf_counter() - started)

    async def message_ids(self, thread_id: str) -> list[str]:
        return _ids(await self.graph.aget_state({"configurable": {"thread_id": thread_id}}))


def _ids(snapshot: StateSnapshot) -> list[str]:
    return [str(m.id) for m in snapshot.values.get("messages") or [] if m.id]


@asynccontextmanager
async def open_driver(
    variant: Variant, url: str, data_dir: Path, *, concurrency: int = 1
) -> AsyncIterator[Driver]:
    """A fresh fake model and the variant on database `url`, sized for `concurrency` threads at once."""
    model = FakeChatModel()
    if variant in ("bare", "delta"):
        async with open_baseline(url, model, "bare" if variant == "bare" else "delta") as graph:
            yield BaselineDriver(graph, model)
        return
    if variant == "langmem":
        async with open_recipe(url, model) as graph:
            yield BaselineDriver(graph, model, per_user=True)
        return
    settings = Settings(
        database_url=url,
        data_dir=data_dir,
        tools="all" if variant == "convomem-tools" else "none",
        durability="async" if variant == "convomem-async" else "sync",
    )
    async with open_convomem(settings, model=model, max_concurrent_runs=max(concurrency, 1)) as cm:
        if variant == "convomem-locked":  # upstream's behaviour, which ConvomemSaver drops on a pool
            # Upstream detail: AsyncPostgresSaver's saver-wide `lock`; pinned by
            # tests/unit/test_upstream_pins.py::test_saver_lock_is_an_asyncio_lock_only_entered_by_cursor.
            cm.persistence.checkpointer.lock = asyncio.Lock()
        yield ConvomemDriver(cm, model)
