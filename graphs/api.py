"""The Python API, one import point: open convomem, chat with streaming, resume, inspect, replay, fork.

Everything a turn must obey is built into the graph (graphs.turn_graph), so this facade adds only what a
Python caller needs: events, the thread's lock across processes, and inspection helpers.
"""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator, Sequence
from contextlib import AsyncExitStack, asynccontextmanager
from datetime import timedelta
from typing import Any

from langchain_core.language_models import BaseChatModel
from langchain_core.messages import HumanMessage
from langchain_core.runnables import RunnableConfig
from langgraph.types import Command, StateSnapshot

from checkpoint.ids import validate_id
from checkpoint.locks import BUSY_TIMEOUT, OnBusy, ThreadWriter, is_thread_busy
from checkpoint.persistence import Persistence, Pool, open_pool
from checkpoint.threads import require_thread, resolve_checkpoint
from graphs.assistants import AssistantRegistry
from graphs.composition import open_assistants, open_graph_parts
from graphs.conversation import compile_graph, utc_now
from graphs.database import database_url, open_database
from graphs.events import (
    CheckpointInfo,
    PendingInterrupt,
    ReplyDone,
    ReplyToken,
    ToolCall,
    ToolResult,
    TurnEnded,
    TurnEvent,
)
from graphs.history import checkpoint_history
from graphs.input_rules import check_message_text
from graphs.logs import configure_logging
from graphs.memory_api import EntityMentions
from graphs.operations import (
    HealthCheck,
    HealthReport,
    OpsReport,
    OpsSeries,
    check_health,
    ops_report,
    ops_series,
)
from graphs.settings import Durability, Settings
from graphs.thread_api import ThreadApi, ThreadDeleted, ThreadExport, ThreadInfo
from graphs.turn_graph import TurnGraph, unfinished
from graphs.turn_runner import RunPlan, TurnRunner, interrupts_of, thread_config
from nodes.config import GraphConfig
from nodes.errors import (
    ConfigError,
    ConvomemError,
    DatabaseUnavailable,
    InvalidInput,
    ModelUnavailable,
    NothingToResume,
    ReplyNotValid,
    RunCancelled,
    ThreadBusy,
    TooManyRuns,
    UnknownCheckpoint,
    UnknownThread,
)
from nodes.memory_tools import FORGET_ANSWERS, FORGET_CONFIRMATION
from nodes.review import REVIEW_ANSWERS
from nodes.state import Context

__all__ = [
    "MAX_CONCURRENT_RUNS",
    "CheckpointInfo",
    "ConfigError",
    "Context",
    "Convomem",
    "ConvomemError",
    "DatabaseUnavailable",
    "EntityMentions",
    "GraphConfig",
    "HealthCheck",
    "HealthReport",
    "InvalidInput",
    "ModelUnavailable",
    "NothingToResume",
    "OnBusy",
    "OpsReport",
    "OpsSeries",
    "PendingInterrupt",
    "ReplyDone",
    "ReplyNotValid",
    "ReplyToken",
    "RunCancelled",
    "Settings",
    "ThreadBusy",
    "ThreadDeleted",
    "ThreadExport",
    "ThreadInfo",
    "TooManyRuns",
    "ToolCall",
    "ToolResult",
    "TurnEnded",
    "TurnEvent",
    "UnknownCheckpoint",
    "UnknownThread",
    "open_convomem",
    "unfinished",
]

MAX_CONCURRENT_RUNS = 16
"""Default size of the lock pool: runs one process can have in flight at once, each holding a connection."""


class Convomem(ThreadApi):
    """One process's handle on the graph and its persistence; every method is safe to call per request.

    Runs (chat, resume, replay, fork) hold their thread's lock across processes from before their checks
    until they end. `on_busy` says what to do when another run holds it: "reject" raises ThreadBusy;
    "enqueue" waits up to `busy_timeout` seconds; "rollback" stops that run at once and deletes what it
    wrote; "interrupt" stops it after its current step and keeps its checkpoints (this message then
    supersedes the unfinished turn). The stopped run's caller gets RunCancelled.
    """

    def __init__(
        self,
        graph: TurnGraph,
        persistence: Persistence,
        settings: Settings,
        lock_pool: Pool,
        archive: Any,
    ) -> None:
        super().__init__(persistence, settings, archive)
        self.graph = graph
        self.lock_pool = lock_pool
        """Connections that hold thread locks during runs, apart from the pool the runs query through."""
        self.runner = TurnRunner(graph, persistence.pool, lock_pool, settings.durability)

    @staticmethod
    def config(thread_id: str, checkpoint_id: str | None = None) -> RunnableConfig:
        return thread_config(validate_id(thread_id), checkpoint_id)

    # -- runs ---------------------------------------------------------------------------------
    async def chat(
        self,
        thread_id: str,
        text: str,
        *,
        user_id: str | None = None,
        review_memory: bool | None = None,
        assistant: str | None = None,
        interrupt_before: Sequence[str] = (),
        interrupt_after: Sequence[str] = (),
        durability: Durability | None = None,
        on_busy: OnBusy = "enqueue",
        busy_timeout: float = BUSY_TIMEOUT,
        reply_done: bool = False,
    ) -> AsyncIterator[TurnEvent]:
        """Send one user message and stream the reply; the thread is untouched if the turn fails.

        `assistant` names the assistant file the turn uses (unset: the thread's, else the one chosen at
        open, else the settings'); `review_memory` unset: the assistant's default, else off.
        `reply_done` adds a ReplyDone event when the reply is saved, before the memory work.
        `durability` overrides the setting for this run ("sync" writes each checkpoint before the next
        step; "async" overlaps the write with the next step; "exit" writes only when the run stops).
        A message sent while another run holds the thread (the previous turn's memory work, say) waits for
        it, up to `busy_timeout` seconds (on_busy="enqueue", the default for chat; "reject" refuses at once).
        A thread waiting for an answer to an interrupt refuses new messages; an unfinished turn (a killed
        process, a stopped run) is superseded: the reply answers both messages.
        """
        config = self.config(thread_id)
        check_message_text(text, self.settings.max_message_bytes)
        context = Context(user_id=user_id, review_memory=review_memory, assistant=assistant)
        message = HumanMessage(content=text, id=str(uuid.uuid4()))

        async def plan(writer: ThreadWriter) -> RunPlan:
            return RunPlan(
                {"messages": [message]},
                config,
                context,
                interrupt_before,
                interrupt_after,
                durability,
                reply_done=reply_done,
            )

        async for event in self.runner.run(thread_id, plan, on_busy=on_busy, busy_timeout=busy_timeout):
            yield event

    async def resume(
        self,
        thread_id: str,
        value: Any = None,
        *,
        user_id: str | None = None,
        review_memory: bool | None = None,
        assistant: str | None = None,
        durability: Durability | None = None,
        on_busy: OnBusy = "reject",
        busy_timeout: float = BUSY_TIMEOUT,
    ) -> AsyncIterator[TurnEvent]:
        """Answer a pending interrupt, continue past a breakpoint, or finish a run a crash cut short.

        The run goes on as it started: same user, review setting and assistant (kept in checkpoint
        metadata).
        A memory review needs an answer (nodes.review.decide_review lists them): `value` None never
        approves, it is refused.
        """
        config = self.config(thread_id)

        async def plan(writer: ThreadWriter) -> RunPlan:
            snapshot = await self.state(thread_id)
            if snapshot.created_at is None:
                await self.require_thread(thread_id)
            if snapshot.interrupts and value is None:
                raise InvalidInput(
                    f"Thread {thread_id!r} waits for an answer: give {answers_for(snapshot.interrupts)} "
                    f"(`convomem pending --thread {thread_id}` shows the question)."
                )
            if snapshot.interrupts:
                graph_input: Any = Command(resume=value)
            elif unfinished(snapshot):
                graph_input = None
            else:
                raise NothingToResume(f"Thread {thread_id!r} has nothing to resume: send a message instead.")
            context = Context(user_id, review_memory, assistant)
            return RunPlan(graph_input, config, context, durability=durability)

        async for event in self.runner.run(thread_id, plan, on_busy=on_busy, busy_timeout=busy_timeout):
            yield event

    async def replay(
        self,
        thread_id: str,
        checkpoint_id: str,
        *,
        user_id: str | None = None,
        assistant: str | None = None,
        on_busy: OnBusy = "reject",
        busy_timeout: float = BUSY_TIMEOUT,
    ) -> AsyncIterator[TurnEvent]:
        """Re-run the graph from a past checkpoint (its id or a unique prefix of it); the newer history
        stays reachable as another branch."""
        config = self.config(thread_id, await self.resolve_checkpoint(thread_id, checkpoint_id))

        async def plan(writer: ThreadWriter) -> RunPlan:
            return RunPlan(None, config, Context(user_id=user_id, assistant=assistant))

        async for event in self.runner.run(thread_id, plan, on_busy=on_busy, busy_timeout=busy_timeout):
            yield event

    async def fork(
        self,
        thread_id: str,
        checkpoint_id: str,
        text: str,
        *,
        user_id: str | None = None,
        assistant: str | None = None,
        on_busy: OnBusy = "reject",
        busy_timeout: float = BUSY_TIMEOUT,
    ) -> AsyncIterator[TurnEvent]:
        """Branch from a past checkpoint (id or unique prefix) with a different message (update_state,
        then continue)."""
        config = self.config(thread_id, await self.resolve_checkpoint(thread_id, checkpoint_id))
        check_message_text(text, self.settings.max_message_bytes)

        async def plan(writer: ThreadWriter) -> RunPlan:
            message = HumanMessage(content=text, id=str(uuid.uuid4()))
            branch = await self.graph.aupdate_state(config, {"messages": [message]}, as_node="__start__")
            return RunPlan(None, branch, Context(user_id=user_id, assistant=assistant))

        async for event in self.runner.run(thread_id, plan, on_busy=on_busy, busy_timeout=busy_timeout):
            yield event

    async def send(self, thread_id: str, text: str, **options: Any) -> TurnEnded:
        """chat() without streaming: the final event."""
        last: TurnEnded | None = None
        async for event in self.chat(thread_id, text, **options):
            if isinstance(event, TurnEnded):
                last = event
        assert last is not None, "every run ends with TurnEnded"
        return last

    # -- inspection ---------------------------------------------------------------------------
    @property
    def assistants(self) -> AssistantRegistry:
        """The assistants runs may name (CONVOMEM_ASSISTANTS_DIR)."""
        assert self.graph.rules is not None and self.graph.rules.assistants is not None
        return self.graph.rules.assistants

    async def state(self, thread_id: str) -> StateSnapshot:
        return await self.graph.aget_state(self.config(thread_id))

    async def opening(self, thread_id: str, assistant: str | None = None) -> str | None:
        """The first message a message sent now would open the thread with: its assistant's (`assistant`,
        else the default one) when the thread has no message yet; else None."""
        assert self.graph.rules is not None
        name = self.assistants.check_name(assistant) or self.graph.rules.default_assistant
        if name is None or (await self.state(thread_id)).values:
            return None
        return self.assistants.get(name).first_message

    async def busy(self, thread_id: str) -> bool:
        """True while a run, in any process, holds the thread."""
        return await is_thread_busy(self.persistence.pool, validate_id(thread_id))

    async def pending_interrupts(self, thread_id: str) -> tuple[PendingInterrupt, ...]:
        return interrupts_of(await self.state(thread_id))

    async def require_thread(self, thread_id: str) -> None:
        """UnknownThread unless a run has used the thread."""
        await require_thread(self.persistence.pool, validate_id(thread_id))

    async def resolve_checkpoint(self, thread_id: str, prefix: str) -> str:
        """The full id of the thread's checkpoint starting with `prefix`; UnknownThread, or UnknownCheckpoint
        when no checkpoint or several match."""
        return await resolve_checkpoint(self.persistence.pool, validate_id(thread_id), prefix)

    async def history(self, thread_id: str, *, limit: int = 50) -> list[CheckpointInfo]:
        """Checkpoints newest first, each with the nodes that produced it and the ones due next;
        UnknownThread for a thread that never existed."""
        await self.require_thread(thread_id)
        return await checkpoint_history(self.graph, self.config(thread_id), limit=limit)

    # -- operations ---------------------------------------------------------------------------
    async def ops(
        self, window: timedelta | str = timedelta(hours=1), *, user_id: str | None = None
    ) -> OpsReport:
        """The run records of the last `window` ("1h", "30m" or a timedelta), everyone's or one user's."""
        return await ops_report(self.persistence.pool, window=window, now=utc_now(), user_id=user_id)

    async def ops_series(
        self, window: timedelta | str = timedelta(hours=24), *, buckets: int = 48, user_id: str | None = None
    ) -> OpsSeries:
        """The window's runs in `buckets` time buckets (turn time, first token, tokens, errors)."""
        return await ops_series(
            self.persistence.pool, window=window, now=utc_now(), buckets=buckets, user_id=user_id
        )

    async def health(self) -> HealthReport:
        """Database, migrations, model server and recent error rate: healthy, degraded or down."""
        return await check_health(self.settings, now=utc_now(), pool=self.persistence.pool)


def answers_for(pending: Sequence[Any]) -> str:
    """What a thread's pending interrupt accepts: yes/no for a forget confirmation, else a review answer."""
    kinds = {i.value.get("type") for i in pending if isinstance(getattr(i, "value", None), dict)}
    return FORGET_ANSWERS if FORGET_CONFIRMATION in kinds else REVIEW_ANSWERS


@asynccontextmanager
async def open_convomem(
    settings: Settings | None = None,
    *,
    model: BaseChatModel | None = None,
    max_concurrent_runs: int = MAX_CONCURRENT_RUNS,
    tools: Sequence[Any] = (),
    assistant: str | None = None,
) -> AsyncIterator[Convomem]:
    """Start what is needed (embedded Postgres, local model) and yield a ready Convomem.

    The graph is built exactly as LangGraph Server builds it (graphs.composition). `model` replaces the
    configured chat model; `max_concurrent_runs` sizes the separate pool of lock connections (one held
    per running turn). `tools` (LangChain tools, or functions whose docstring says what they do) may be
    called by the model, after the built-in memory tools CONVOMEM_TOOLS selects; a tool with side effects
    should use its call id as idempotency key (InjectedToolCallId or ToolRuntime.tool_call_id): a resumed
    turn never re-runs a call that completed, but a call cut off by a crash runs again. `assistant` is the
    assistant of runs that name none on threads that have none (CONVOMEM_ASSISTANT); a broken assistant
    file or an unknown name fails here, before anything starts.
    """
    settings = settings or Settings()
    if settings.log_level is not None:  # otherwise logging stays the application's
        configure_logging(settings.log_level, settings.log_format)
    if assistant is not None:
        settings = settings.model_copy(update={"assistant": assistant})
    await asyncio.to_thread(open_assistants, settings)
    async with AsyncExitStack() as stack:
        persistence = await stack.enter_async_context(open_database(settings))
        url = await database_url(settings)
        lock_pool = await stack.enter_async_context(open_pool(url, max_size=max_concurrent_runs))
        parts = await stack.enter_async_context(
            open_graph_parts(settings, pool=persistence.pool, model=model, tools=tools)
        )
        graph = compile_graph(
            parts.builder, parts.rules, checkpointer=persistence.checkpointer, store=persistence.store
        )
        yield Convomem(graph, persistence, settings, lock_pool, parts.archive)
