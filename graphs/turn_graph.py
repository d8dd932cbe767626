"""The compiled conversation graph with the rules of a turn built in, for every path that runs it.

LangGraph Server runs the compiled graph directly (langgraph-api calls `astream`, or `astream_events`,
which calls `astream`, on a `copy()` of it, which keeps this class): so input validation, the thread's
user and review setting, and undoing a failed run live here, not in the Python facade.
"""

from __future__ import annotations

import asyncio
import logging
import time
import uuid
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from functools import partial
from pathlib import Path
from typing import Any

import openai
from langchain_core.messages import AIMessage
from langchain_core.runnables import RunnableConfig
from langchain_core.runnables.config import merge_configs
from langgraph.checkpoint.base import BaseCheckpointSaver
from langgraph.graph.state import CompiledStateGraph
from langgraph.types import StateSnapshot
from opentelemetry.trace import Tracer
from psycopg import OperationalError

from checkpoint.ids import validate_user_id
from checkpoint.metadata import ASSISTANT_KEY, REVIEW_KEY, USER_KEY
from checkpoint.persistence import Pool
from checkpoint.threads import RunHead, discard_run, read_run_head, unknown_checkpoint
from graphs.assistants import AssistantRegistry
from graphs.input_rules import (
    CheckedInput,
    check_context,
    check_state_update,
    check_thread_id,
    check_turn_input,
)
from graphs.run_recording import RunObserver, RunOutcome, run_id_of, save_run_record
from graphs.tracing import RunTrace
from nodes.config import GraphConfig
from nodes.errors import (
    ConvomemError,
    DatabaseUnavailable,
    InvalidInput,
    ModelUnavailable,
    NothingToResume,
)
from nodes.extract_entities import check_review_answer
from nodes.memory_tools import check_forget_answer
from nodes.state import Context, State

__all__ = ["PlannedRun", "RunLink", "TurnGraph", "TurnRules", "as_user_facing", "unfinished"]

_log = logging.getLogger("convomem.turn")


@dataclass(frozen=True)
class TurnRules:
    """What the graph enforces on every run: the configuration's limits and defaults, and the pool on
    which a failed run's checkpoints are undone and every run's record is written (None: nothing to undo
    or write, e.g. an in-memory saver); the assistants a run may name, and the one of runs and threads that
    name none (None: the settings'). `clock` stamps a run's start and end, `timer` measures it."""

    config: GraphConfig
    pool: Pool | None = None
    assistants: AssistantRegistry | None = None
    default_assistant: str | None = None
    clock: Callable[[], datetime] = field(default=partial(datetime.now, UTC))
    timer: Callable[[], float] = time.monotonic
    tracer: Tracer | None = None
    """OpenTelemetry: a span per run, a child span per node (None: no traces)."""


@dataclass(frozen=True)
class PlannedRun:
    """A run that passed the rules: what it asks for, for whom, and the head to undo back to."""

    checked: CheckedInput
    context: Context
    thread_id: str | None
    head: RunHead | None


@dataclass
class RunLink:
    """What an in-process caller that holds the thread's lock (graphs.turn_runner) and the graph share
    about one run, so that neither reads the thread twice; LangGraph Server passes none."""

    head: RunHead | None = None
    """In: the thread's head as the caller read it under the lock (None: the graph reads it)."""
    final: StateSnapshot | None = None
    """Out: the thread's state after the run, when the graph read it (None: it did not)."""


def unfinished(snapshot: StateSnapshot) -> bool:
    """Due work remains: nodes to run, or tasks whose saved writes still wait to be applied."""
    return bool(snapshot.next or snapshot.tasks)


def as_user_facing(error: Exception) -> Exception:
    """Library errors as ConvomemError with a message saying what to do (the same words on every path)."""
    if isinstance(error, ConvomemError):
        return error
    if isinstance(error, openai.APIConnectionError | openai.APIStatusError):
        return ModelUnavailable(
            f"The model server did not answer ({type(error).__name__}): start it or check OPENAI_BASE_URL / "
            "OPENAI_API_KEY, then send the message again. Nothing was saved."
        )
    if isinstance(error, OperationalError):
        return DatabaseUnavailable(f"Postgres failed during the turn ({error}); nothing was saved.")
    return error


class TurnGraph(CompiledStateGraph[State, Context, State, State]):
    """CompiledStateGraph plus the rules of a turn (`rules`; None runs the plain graph)."""

    def __init__(self, *, rules: TurnRules | None = None, **kwargs: Any) -> None:
        # Pregel.copy() rebuilds a graph as `type(self)(**self.__dict__)`: `rules` travels with it.
        super().__init__(**kwargs)
        self.rules = rules

    async def check_run(
        self, graph_input: Any, config: RunnableConfig | None, context: Any, *, head: RunHead | None = None
    ) -> PlannedRun:
        """Every rule a run must pass before anything is written; raises a ConvomemError saying why.
        `head`: the thread's head, when the caller read it under the thread's lock (else read here).

        Also resolves who the run acts for: the context's user, else the user of the thread's newest
        run, else the configured default; and its review setting: the context's, else off for a new
        message and the thread's own for a resume, a continue or a replay.
        """
        rules = self._rules()
        checked = check_turn_input(graph_input, rules.config.max_message_bytes)
        asked = check_context(context, strict=False)
        configurable = (config or {}).get("configurable") or {}
        if configurable.get("thread_id") is None:
            return PlannedRun(checked, self._resolved(asked, checked, None), None, None)
        thread_id = check_thread_id(configurable["thread_id"])
        if rules.pool is None:
            head = None
        elif head is None:
            head = await read_run_head(rules.pool, thread_id)
        checkpoint_id = configurable.get("checkpoint_id")
        if checkpoint_id is not None:
            await self._known_checkpoint(thread_id, checkpoint_id)
        if checked.kind == "resume":
            snapshot = await self.aget_state(_thread_config(thread_id))
            if not snapshot.interrupts:
                raise NothingToResume(f"Thread {thread_id!r} has nothing to resume: send a message instead.")
            check_review_answer(snapshot.interrupts, checked.resume)
            check_forget_answer(snapshot.interrupts, checked.resume)
        elif checked.kind == "continue" and checkpoint_id is None:
            if not unfinished(await self.aget_state(_thread_config(thread_id))):
                raise NothingToResume(f"Thread {thread_id!r} has nothing to resume: send a message instead.")
        elif checked.kind == "message" and (head is None or head.interrupted):
            snapshot = await self.aget_state(_thread_config(thread_id))
            if snapshot.interrupts:
                raise InvalidInput(
                    f"Thread {thread_id!r} waits for an answer to an interrupt: run "
                    f"`convomem resume --thread {thread_id}` first (add --value for a review)."
                )
        return PlannedRun(checked, self._resolved(asked, checked, head), thread_id, head)

    async def astream(
        self,
        input: Any,
        config: RunnableConfig | None = None,
        *,
        context: Any = None,
        link: RunLink | None = None,
        **kwargs: Any,
    ) -> AsyncIterator[Any]:
        """Check the run, stamp whom it acts for in checkpoint metadata, run it; when it fails, remove
        every checkpoint and write it made, so the thread is exactly as it was (then re-raise). Every run
        that passed the checks leaves one run record, however it ended (observed through a callback
        handler added to the run's config: the chunks the caller reads are unchanged). `link`: what an
        in-process caller holding the thread's lock already read, and gets back (see RunLink)."""
        if self.rules is None:
            async for chunk in super().astream(input, config, context=context, **kwargs):
                yield chunk
            return
        rules = self.rules
        plan = await self.check_run(input, config, context, head=link.head if link is not None else None)
        observer = RunObserver(rules.timer)
        traced = RunTrace(rules.tracer) if rules.tracer is not None else None
        started_at = rules.clock()
        stamped: RunnableConfig = merge_configs(
            {
                **(config or {}),
                "metadata": {
                    **((config or {}).get("metadata") or {}),
                    USER_KEY: plan.context.user_id,
                    REVIEW_KEY: plan.context.review_memory,
                    ASSISTANT_KEY: plan.context.assistant,
                },
            },
            {"callbacks": [observer] if traced is None else [observer, traced]},
        )
        status, failure = "error", None
        try:
            opened = await self._opening(input, plan)
            async for chunk in super().astream(opened, stamped, context=plan.context, **kwargs):
                yield chunk
            status = "interrupted" if await self._paused(plan, link) else "ok"
        except (asyncio.CancelledError, GeneratorExit):
            status = "cancelled"  # LangGraph Server cancelled the run, or the caller stopped reading
            raise
        except Exception as error:
            await self._undo(plan)
            failure = as_user_facing(error)
            raise failure from error
        finally:
            run_id = run_id_of(config, lambda: str(uuid.uuid4()))
            who = (plan.thread_id, plan.context.user_id)
            outcome = RunOutcome(run_id, *who, started_at, status, failure, assistant=plan.context.assistant)
            record = await save_run_record(rules.pool, outcome, observer, rules.clock())
            if traced is not None:
                traced.finish(record)

    async def aupdate_state(
        self, config: RunnableConfig, values: Any, as_node: str | None = None, task_id: str | None = None
    ) -> RunnableConfig:
        """A caller's edit of a thread (a fork) follows the input rules: one user message, or nothing."""
        if self.rules is not None and values is not None:
            check_state_update(values, self.rules.config.max_message_bytes)
            thread_id = check_thread_id((config.get("configurable") or {}).get("thread_id"))
            checkpoint_id = (config.get("configurable") or {}).get("checkpoint_id")
            if checkpoint_id is not None:
                await self._known_checkpoint(thread_id, checkpoint_id)
        return await super().aupdate_state(config, values, as_node=as_node, task_id=task_id)

    def _rules(self) -> TurnRules:
        assert self.rules is not None
        return self.rules

    def _resolved(self, asked: Context, checked: CheckedInput, head: RunHead | None) -> Context:
        rules = self._rules()
        user = validate_user_id(asked.user_id or (head.user_id if head else None) or rules.config.user_id)
        assistant = asked.assistant or (head.assistant if head else None) or rules.default_assistant
        if assistant is not None:
            assistant = self._assistants().check_name(assistant)
        if asked.review_memory is not None:
            review = asked.review_memory
        elif checked.kind == "message":  # a new message: the assistant's review default, else off
            review = bool(assistant and self._assistants().get(assistant).review_memory)
        else:
            review = bool(head and head.review_memory)
        return Context(user_id=user, review_memory=review, assistant=assistant)

    async def _is_new(self, plan: PlannedRun) -> bool:
        if plan.head is not None:
            return plan.head.checkpoint_id is None
        assert plan.thread_id is not None
        return not (await self.aget_state(_thread_config(plan.thread_id))).values

    def _assistants(self) -> AssistantRegistry:
        return self._rules().assistants or AssistantRegistry(Path())

    async def _opening(self, graph_input: Any, plan: PlannedRun) -> Any:
        """A new thread's first message with the assistant's first message before it (that message then
        opens the thread, as if the assistant had spoken first); any other input as it is."""
        if plan.checked.kind != "message" or plan.thread_id is None or plan.context.assistant is None:
            return graph_input
        first = self._assistants().get(plan.context.assistant).first_message
        if first is None or not await self._is_new(plan):
            return graph_input
        sent = graph_input["messages"]
        opening = AIMessage(content=first, id=f"first-message-{plan.thread_id}")
        return {"messages": [opening, *(sent if isinstance(sent, list | tuple) else [sent])]}

    async def _known_checkpoint(self, thread_id: str, checkpoint_id: object) -> None:
        found = None
        if isinstance(checkpoint_id, str):
            try:
                uuid.UUID(checkpoint_id)
            except ValueError:
                found = None
            else:  # a load error of a real row is not "unknown": it names its thread and checkpoint itself
                config = _thread_config(thread_id, checkpoint_id)
                saver = self.checkpointer
                found = await saver.aget_tuple(config) if isinstance(saver, BaseCheckpointSaver) else True
        if found is None:
            raise unknown_checkpoint(thread_id, str(checkpoint_id))

    async def _paused(self, plan: PlannedRun, link: RunLink | None) -> bool:
        """The run stopped at an interrupt (a review, a breakpoint) rather than at the end (the state read
        to tell is handed to `link`)."""
        if plan.thread_id is None:
            return False
        try:
            snapshot = await self.aget_state(_thread_config(plan.thread_id))
        except Exception as error:  # the record says ok rather than failing a finished turn
            _log.warning("could not read thread %r after its run: %s", plan.thread_id, error)
            return False
        if link is not None:
            link.final = snapshot
        return unfinished(snapshot)

    async def _undo(self, plan: PlannedRun) -> None:
        pool = self._rules().pool
        if pool is None or plan.thread_id is None or plan.head is None:
            return
        try:
            await discard_run(pool, plan.thread_id, plan.head.checkpoint_id, plan.head.write_keys)
        except Exception as error:  # the database is down: the next turn finds the unfinished run
            _log.warning("could not undo the failed run on thread %r: %s", plan.thread_id, error)


def _thread_config(thread_id: str, checkpoint_id: str | None = None) -> RunnableConfig:
    configurable = {"thread_id": thread_id, "checkpoint_ns": ""}
    if checkpoint_id is not None:
        configurable["checkpoint_id"] = checkpoint_id
    return {"configurable": configurable}
