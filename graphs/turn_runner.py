"""Running one turn from Python: the thread's lock, the graph's stream as events, stopped runs undone.

What must hold on every path (input rules, the thread's user, undoing a failed run, compaction) is in
the graph itself (graphs.turn_graph); this adds what only an in-process caller has: one writer per
thread across processes (checkpoint.locks) with the on-busy strategies, and events instead of chunks.
"""

from __future__ import annotations

import logging
import uuid
from collections.abc import AsyncGenerator, AsyncIterator, Awaitable, Callable, Sequence
from dataclasses import dataclass
from typing import Any, cast

from langchain_core.messages import AIMessage, AIMessageChunk, ToolMessage
from langchain_core.runnables import RunnableConfig
from langgraph.types import StateSnapshot

from checkpoint.locks import BUSY_TIMEOUT, OnBusy, ThreadWriter, hold_thread
from checkpoint.metadata import RUN_ID_KEY
from checkpoint.persistence import Pool
from checkpoint.threads import RunHead, discard_run, read_run_head
from graphs.events import PendingInterrupt, ReplyDone, ReplyToken, ToolCall, ToolResult, TurnEnded, TurnEvent
from graphs.settings import Durability
from graphs.turn_graph import RunLink, TurnGraph
from nodes.errors import RunCancelled
from nodes.state import Context

__all__ = ["RunPlan", "TurnRunner", "interrupts_of", "thread_config", "tool_events"]

_log = logging.getLogger("convomem.turn")

Plan = Callable[[ThreadWriter], Awaitable["RunPlan"]]


@dataclass(frozen=True)
class RunPlan:
    """What a run will do, decided while holding the thread's lock."""

    graph_input: Any
    config: RunnableConfig
    context: Context
    interrupt_before: Sequence[str] = ()
    interrupt_after: Sequence[str] = ()
    durability: Durability | None = None
    reply_done: bool = False
    """Yield ReplyDone once the reply is saved, before the memory work."""


def thread_config(thread_id: str, checkpoint_id: str | None = None) -> RunnableConfig:
    configurable = {"thread_id": thread_id}
    if checkpoint_id is not None:
        configurable["checkpoint_id"] = checkpoint_id
    return {"configurable": configurable}


def interrupts_of(snapshot: StateSnapshot) -> tuple[PendingInterrupt, ...]:
    return tuple(PendingInterrupt(id=i.id, value=i.value) for i in snapshot.interrupts)


def _last_reply(snapshot: StateSnapshot) -> str | None:
    """The assistant's answer to the newest human message, if the turn got that far."""
    for message in reversed(snapshot.values.get("messages") or []):
        if message.type == "human":
            return None
        if message.type == "ai":
            return str(message.text)
    return None


def _is_step_done(event: tuple[str, Any]) -> bool:
    """A "checkpoints" event: the previous step's state is saved, the next step not started."""
    return event[0] == "checkpoints"


_MEMORY_NODES = ("extract_entities", "summarize")


def _is_reply_saved(event: tuple[str, Any]) -> bool:
    """respond's checkpoint: the reply is saved and the memory nodes are next."""
    return event[0] == "checkpoints" and any(n in _MEMORY_NODES for n in event[1].get("next") or ())


def _is_reply_token(chunk: Any, metadata: Any) -> bool:
    """Only respond's tokens reach the user; the memory nodes' model calls stay silent."""
    return (
        metadata.get("langgraph_node") == "respond" and isinstance(chunk, AIMessageChunk) and bool(chunk.text)
    )


def tool_events(update: Any) -> list[ToolCall | ToolResult]:
    """The tool calls respond made and the results the tools node returned, from one "updates" chunk
    ({node: {"messages": [...]}}); nothing else."""
    events: list[ToolCall | ToolResult] = []
    for node, values in (update or {}).items() if isinstance(update, dict) else ():
        messages = values.get("messages") if isinstance(values, dict) else None
        for message in messages or ():
            if node == "respond" and isinstance(message, AIMessage):
                events += [ToolCall(c["id"] or "", c["name"], dict(c["args"])) for c in message.tool_calls]
            elif isinstance(message, ToolMessage):
                error = message.status == "error"
                events.append(ToolResult(message.tool_call_id, message.name or "", str(message.text), error))
    return events


class TurnRunner:
    """Runs planned turns on one graph: lock, stream, undo on a rollback, the final event."""

    def __init__(self, graph: TurnGraph, pool: Pool, lock_pool: Pool, durability: Durability) -> None:
        self.graph = graph
        self.pool = pool
        self.lock_pool = lock_pool
        self.durability = durability

    async def run(
        self, thread_id: str, plan: Plan, *, on_busy: OnBusy = "reject", busy_timeout: float = BUSY_TIMEOUT
    ) -> AsyncIterator[TurnEvent]:
        """Take the thread's lock (`on_busy` says what to do when another run holds it), decide the run
        from the state found under it, run it, and end with TurnEnded."""
        async with hold_thread(
            self.lock_pool, thread_id, on_busy=on_busy, busy_timeout=busy_timeout
        ) as writer:
            # The head before the plan: a fork's plan writes its branch, which a failed run must not keep.
            # Read with the lock when the lock was free at once (one round trip for both).
            head = writer.head or await read_run_head(self.pool, thread_id)
            try:
                planned = await plan(writer)
                async for event in self._run(planned, writer, head):
                    yield event
            except RunCancelled as error:
                if not error.kept_progress:  # rolled back by a newer message: undo what this run wrote
                    await self._undo(thread_id, head)
                raise
            except Exception:
                await self._undo(thread_id, head)
                raise

    async def _undo(self, thread_id: str, head: RunHead) -> None:
        """Back to the head the run found (the graph undid its own run; this also drops a fork's branch)."""
        try:
            await discard_run(self.pool, thread_id, head.checkpoint_id, head.write_keys)
        except Exception as error:  # the database is down: the next turn supersedes what is left
            _log.warning("could not undo the failed run on thread %r: %s", thread_id, error)

    async def _run(self, run: RunPlan, writer: ThreadWriter, head: RunHead) -> AsyncIterator[TurnEvent]:
        thread_id = writer.thread_id
        run_id = str(uuid.uuid4())
        announce = run.reply_done
        writer.start_run(run_id, head.checkpoint_id)
        run_config: RunnableConfig = {**run.config, "metadata": {RUN_ID_KEY: run_id}}
        # The graph checks the run against the same head, unless the plan moved it (a fork's branch) or
        # the run starts from a past checkpoint: then it reads the thread itself.
        from_head = "checkpoint_id" not in (run.config.get("configurable") or {})
        link = RunLink(head=head if from_head else None)
        events = self.graph.astream(
            run.graph_input,
            run_config,
            context=run.context,
            link=link,
            stream_mode=["messages", "updates", "checkpoints"],
            durability=run.durability or self.durability,
            interrupt_before=list(run.interrupt_before) or None,
            interrupt_after=list(run.interrupt_after) or None,
        )
        async for mode, payload in writer.stream(
            cast(AsyncGenerator[tuple[str, Any], None], events), step_done=_is_step_done
        ):
            if mode == "messages" and _is_reply_token(*payload):
                yield ReplyToken(cast(AIMessageChunk, payload[0]).text)
            elif mode == "updates":
                for event in tool_events(payload):
                    yield event
            elif announce and _is_reply_saved((mode, payload)):
                announce = False
                yield ReplyDone()
        snapshot = link.final or await self.graph.aget_state(thread_config(thread_id))
        yield TurnEnded(
            reply=_last_reply(snapshot),
            interrupts=interrupts_of(snapshot),
            next_nodes=tuple(snapshot.next),
            checkpoint_id=(snapshot.config or {}).get("configurable", {}).get("checkpoint_id"),
        )
