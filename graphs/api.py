"""The Python API: open convomem, chat with streaming, resume, inspect, replay and fork threads."""

from __future__ import annotations

import logging
import uuid
from collections.abc import AsyncGenerator, AsyncIterator, Awaitable, Callable, Sequence
from contextlib import AsyncExitStack, asynccontextmanager
from dataclasses import dataclass
from typing import Any, cast

import openai
from langchain_core.language_models import BaseChatModel
from langchain_core.messages import AIMessageChunk, HumanMessage
from langchain_core.runnables import RunnableConfig
from langgraph.graph.state import CompiledStateGraph
from langgraph.types import Command, StateSnapshot
from psycopg import OperationalError

from checkpoint.compaction import compact_thread
from checkpoint.ids import validate_id, validate_user_id
from checkpoint.locks import (
    BUSY_TIMEOUT,
    RUN_ID_KEY,
    OnBusy,
    ThreadWriter,
    hold_thread,
    is_thread_busy,
)
from checkpoint.persistence import Persistence, Pool, open_pool
from checkpoint.threads import ThreadSummary, discard_run, list_threads, pending_write_keys
from checkpoint.transcript import (
    USER_KEY,
    ForgetReport,
    SearchHit,
    TranscriptArchive,
    TranscriptEntry,
    UserStats,
    forget_user,
    open_transcript,
    read_messages,
    read_transcript,
    search_transcript,
    user_stats,
)
from graphs.conversation import NODES, build_graph
from graphs.database import database_url, open_database
from graphs.events import CheckpointInfo, PendingInterrupt, ReplyToken, TurnEnded, TurnEvent
from graphs.models import shared_chat_model
from graphs.settings import Durability, Settings
from nodes.entity_lookup import find_entity, forget_entity
from nodes.errors import (
    ConvomemError,
    DatabaseUnavailable,
    InvalidInput,
    ModelUnavailable,
    NothingToResume,
    RunCancelled,
    UnknownCheckpoint,
)
from nodes.extract_entities import check_review_answer
from nodes.memory import ENTITY_TYPES, MAX_VALUE_CHARS, EntityRecord, entity_namespace
from nodes.profile import UserProfile, load_profile
from nodes.prompts import DEFAULT_INSTRUCTIONS
from nodes.state import Context, State

_log = logging.getLogger("convomem.api")

__all__ = [
    "MAX_CONCURRENT_RUNS",
    "CheckpointInfo",
    "Convomem",
    "EntityMentions",
    "OnBusy",
    "PendingInterrupt",
    "ReplyToken",
    "TurnEnded",
    "TurnEvent",
    "open_convomem",
    "unfinished",
]


REVIEW_KEY = "convomem_review_memory"
"""Checkpoint metadata keys: how a thread's run was started, so resume, replay and fork go on alike."""
MAX_CONCURRENT_RUNS = 16
"""Default size of the lock pool: runs one process can have in flight at once, each holding a connection."""


@dataclass(frozen=True)
class _Run:
    """What a run will do, decided while holding the thread's lock."""

    graph_input: Any
    config: RunnableConfig
    context: Context
    interrupt_before: Sequence[str] = ()
    interrupt_after: Sequence[str] = ()
    durability: Durability | None = None
    head: StateSnapshot | None = None
    """The thread's latest state when the plan already read it (saves reading it again)."""


def unfinished(snapshot: StateSnapshot) -> bool:
    """Due work remains: nodes to run, or tasks whose saved writes still wait to be applied."""
    return bool(snapshot.next or snapshot.tasks)


def _interrupts(snapshot: StateSnapshot) -> tuple[PendingInterrupt, ...]:
    return tuple(PendingInterrupt(id=i.id, value=i.value) for i in snapshot.interrupts)


def _last_reply(snapshot: StateSnapshot) -> str | None:
    """The assistant's answer to the newest human message, if the turn got that far."""
    for message in reversed(snapshot.values.get("messages") or []):
        if message.type == "human":
            return None
        if message.type == "ai":
            return str(message.text)
    return None


@dataclass(frozen=True)
class EntityMentions:
    """One entity and every archived message that named it, across threads."""

    record: EntityRecord
    mentions: list[TranscriptEntry]


class Convomem:
    """One process's handle on the graph and its persistence; every method is safe to call per request."""

    def __init__(
        self,
        graph: CompiledStateGraph[Any, Any, Any, Any],
        persistence: Persistence,
        settings: Settings,
        lock_pool: Pool,
        archive: TranscriptArchive,
    ):
        self.graph = graph
        self.persistence = persistence
        self.settings = settings
        self.lock_pool = lock_pool
        """Connections that hold thread locks during runs, apart from the pool the runs query through."""
        self.archive = archive
        """Where reduce_history keeps every message (the graph's), and the language search parses with."""

    # -- input checks -------------------------------------------------------------------------
    def context(self, user_id: str | None = None, *, review_memory: bool = False) -> Context:
        return Context(
            user_id=validate_user_id(user_id or self.settings.user_id),
            instructions=self.settings.instructions or DEFAULT_INSTRUCTIONS,
            prompt_tokens=self.settings.prompt_tokens,
            working_set_tokens=self.settings.working_set_tokens,
            memory_tokens=self.settings.memory_tokens,
            review_memory=review_memory,
            extract_every=self.settings.extract_every,
            extract_on_new_content_only=self.settings.extract_on_new_content_only,
        )

    def check_message(self, text: str) -> str:
        if not text.strip():
            raise InvalidInput("Empty message: type something to send.")
        if "\x00" in text:
            raise InvalidInput("The message contains a NUL character (\\x00): remove it and send again.")
        try:
            size = len(text.encode("utf-8"))
        except UnicodeEncodeError as error:
            raise InvalidInput(
                f"The message is not valid Unicode text (character {error.start}): re-encode it as UTF-8."
            ) from None
        if size > self.settings.max_message_bytes:
            raise InvalidInput(
                f"Message is {size} bytes, over the {self.settings.max_message_bytes}-byte limit "
                "(CONVOMEM_MAX_MESSAGE_BYTES): shorten it or raise the limit."
            )
        return text

    @staticmethod
    def config(thread_id: str, checkpoint_id: str | None = None) -> RunnableConfig:
        configurable = {"thread_id": validate_id(thread_id)}
        if checkpoint_id is not None:
            configurable["checkpoint_id"] = checkpoint_id
        return {"configurable": configurable}

    # -- runs ---------------------------------------------------------------------------------
    # Every run holds its thread's lock (checkpoint.locks) from before its checks until it ends, so one
    # thread has one writer at a time across processes. `on_busy` says what to do when another run holds
    # it: "reject" raises ThreadBusy; "enqueue" waits up to `busy_timeout` seconds; "rollback" stops that
    # run at once and deletes what it wrote; "interrupt" stops it after its current step and keeps its
    # checkpoints. The stopped run's caller gets RunCancelled.
    async def chat(
        self,
        thread_id: str,
        text: str,
        *,
        user_id: str | None = None,
        review_memory: bool = False,
        interrupt_before: Sequence[str] = (),
        interrupt_after: Sequence[str] = (),
        durability: Durability | None = None,
        on_busy: OnBusy = "reject",
        busy_timeout: float = BUSY_TIMEOUT,
    ) -> AsyncIterator[TurnEvent]:
        """Send one user message and stream the reply; the thread is untouched if the turn fails.

        `durability` overrides the setting for this run ("sync" writes each checkpoint before the next
        step; "async" overlaps the write with the next step; "exit" writes only when the run stops).

        A thread that waits for a resume refuses new messages, except when this message stopped the run
        that left it so (rollback or interrupt): then the message supersedes the unfinished turn. After an
        interrupt the thread holds the stopped turn's user message (and its reply, if respond finished);
        the new message is added after it and LangGraph drops the stopped turn's pending steps, so the
        reply answers both messages, as LangGraph Server's interrupt does. (After a rollback, a pending
        state can only remain if the stopped process died before undoing its run; it is superseded too.)
        """
        config = self.config(thread_id)
        self.check_message(text)

        async def plan(writer: ThreadWriter) -> _Run:
            snapshot = await self.state(thread_id)
            context = self._context_of(snapshot, user_id, review_memory)
            if (snapshot.interrupts or unfinished(snapshot)) and writer.took_over is None:
                waiting = (
                    "an answer to an interrupt" if snapshot.interrupts else "its unfinished turn to resume"
                )
                raise InvalidInput(
                    f"Thread {thread_id!r} waits for {waiting}: run "
                    f"`convomem resume --thread {thread_id}` first (add --value for a review)."
                )
            message = HumanMessage(content=text, id=str(uuid.uuid4()))
            return _Run(
                {"messages": [message]},
                config,
                context,
                interrupt_before,
                interrupt_after,
                durability,
                snapshot,
            )

        async for event in self._locked_run(thread_id, on_busy, busy_timeout, plan):
            yield event

    async def resume(
        self,
        thread_id: str,
        value: Any = None,
        *,
        user_id: str | None = None,
        review_memory: bool | None = None,
        durability: Durability | None = None,
        on_busy: OnBusy = "reject",
        busy_timeout: float = BUSY_TIMEOUT,
    ) -> AsyncIterator[TurnEvent]:
        """Answer a pending interrupt, continue past a breakpoint, or finish a run a crash cut short.

        The run goes on as it started: same user, same review setting (kept in checkpoint metadata).
        """
        config = self.config(thread_id)

        async def plan(writer: ThreadWriter) -> _Run:
            snapshot = await self.state(thread_id)
            context = self._context_of(snapshot, user_id, review_memory)
            if snapshot.interrupts:
                answer = "approve" if value is None else value
                check_review_answer(snapshot.interrupts, answer)
                graph_input: Any = Command(resume=answer)
            elif unfinished(snapshot):
                graph_input = None
            else:
                raise NothingToResume(f"Thread {thread_id!r} has nothing to resume: send a message instead.")
            return _Run(graph_input, config, context, durability=durability, head=snapshot)

        async for event in self._locked_run(thread_id, on_busy, busy_timeout, plan):
            yield event

    async def replay(
        self,
        thread_id: str,
        checkpoint_id: str,
        *,
        user_id: str | None = None,
        on_busy: OnBusy = "reject",
        busy_timeout: float = BUSY_TIMEOUT,
    ) -> AsyncIterator[TurnEvent]:
        """Re-run the graph from a past checkpoint; the newer history stays reachable as another branch."""
        validate_id(thread_id)

        async def plan(writer: ThreadWriter) -> _Run:
            config = await self._known_checkpoint(thread_id, checkpoint_id)
            context = self._context_of(await self.graph.aget_state(config), user_id, None)
            return _Run(None, config, context)

        async for event in self._locked_run(thread_id, on_busy, busy_timeout, plan):
            yield event

    async def fork(
        self,
        thread_id: str,
        checkpoint_id: str,
        text: str,
        *,
        user_id: str | None = None,
        on_busy: OnBusy = "reject",
        busy_timeout: float = BUSY_TIMEOUT,
    ) -> AsyncIterator[TurnEvent]:
        """Branch from a past checkpoint with a different message (update_state, then continue)."""
        validate_id(thread_id)
        self.check_message(text)

        async def plan(writer: ThreadWriter) -> _Run:
            config = await self._known_checkpoint(thread_id, checkpoint_id)
            context = self._context_of(await self.graph.aget_state(config), user_id, None)
            message = HumanMessage(content=text, id=str(uuid.uuid4()))
            branch = await self.graph.aupdate_state(config, {"messages": [message]}, as_node="__start__")
            return _Run(None, branch, context)

        async for event in self._locked_run(thread_id, on_busy, busy_timeout, plan):
            yield event

    async def send(self, thread_id: str, text: str, **options: Any) -> TurnEnded:
        """chat() without streaming: the final event."""
        return await _last_event(self.chat(thread_id, text, **options))

    def _context_of(self, snapshot: StateSnapshot, user_id: str | None, review: bool | None) -> Context:
        """The context a thread's runs were started with, unless the caller overrides it."""
        metadata = snapshot.metadata or {}
        return self.context(
            user_id or str(metadata.get(USER_KEY) or "") or None,
            review_memory=bool(metadata.get(REVIEW_KEY)) if review is None else review,
        )

    async def _locked_run(
        self,
        thread_id: str,
        on_busy: OnBusy,
        busy_timeout: float,
        plan: Callable[[ThreadWriter], Awaitable[_Run]],
    ) -> AsyncIterator[TurnEvent]:
        """Take the thread's lock, decide the run from the state found under it, run it."""
        async with hold_thread(
            self.lock_pool, thread_id, on_busy=on_busy, busy_timeout=busy_timeout
        ) as writer:
            run = await plan(writer)
            async for event in self._run(run, writer):
                yield event

    async def _run(self, run: _Run, writer: ThreadWriter) -> AsyncIterator[TurnEvent]:
        thread_id = writer.thread_id
        latest = run.head or await self.graph.aget_state(self.config(thread_id))
        head_id = (latest.config or {}).get("configurable", {}).get("checkpoint_id")
        # A finished head has no tasks, so no saved writes of its own to tell apart from the run's.
        head_writes = (
            await pending_write_keys(self.persistence.pool, thread_id, head_id) if latest.next else set()
        )
        context = run.context
        run_id = str(uuid.uuid4())
        writer.start_run(run_id, head_id)
        run_config: RunnableConfig = {
            **run.config,
            "metadata": {USER_KEY: context.user_id, REVIEW_KEY: context.review_memory, RUN_ID_KEY: run_id},
        }
        events = self.graph.astream(
            run.graph_input,
            run_config,
            context=context,
            stream_mode=["messages", "checkpoints"],
            durability=run.durability or self.settings.durability,
            interrupt_before=list(run.interrupt_before) or None,
            interrupt_after=list(run.interrupt_after) or None,
        )
        try:
            async for mode, payload in writer.stream(
                cast(AsyncGenerator[tuple[str, Any], None], events), step_done=_is_step_done
            ):
                if mode == "messages" and _is_reply_token(*payload):
                    yield ReplyToken(cast(AIMessageChunk, payload[0]).text)
        except Exception as error:
            if not (isinstance(error, RunCancelled) and error.kept_progress):
                await discard_run(self.persistence.pool, thread_id, head_id, head_writes)
            raise _user_facing(error) from error
        snapshot = await self.state(thread_id)
        await self._compact_now_and_then(thread_id, latest, snapshot)
        yield TurnEnded(
            reply=_last_reply(snapshot),
            interrupts=_interrupts(snapshot),
            next_nodes=tuple(snapshot.next),
            checkpoint_id=(snapshot.config or {}).get("configurable", {}).get("checkpoint_id"),
        )

    async def _compact_now_and_then(
        self, thread_id: str, before: StateSnapshot, after: StateSnapshot
    ) -> None:
        """About every `compact_every` turns, drop step checkpoints of turns older than
        `step_history_turns` (each keeps its last checkpoint; the transcript keeps every message).
        Runs under the turn's thread lock; a failure costs only the saving, never the turn."""
        period = self.settings.compact_every * len(NODES)
        old, new = _step(before), _step(after)
        if not period or new is None or (old is not None and old // period == new // period):
            return
        try:
            await compact_thread(
                self.persistence.pool,
                thread_id,
                keep_recent_runs=self.settings.step_history_turns,
                lock=False,
                measure=False,  # nobody reads the sizes here: skip summing the thread twice
            )
        except Exception as error:
            _log.warning("compaction of thread %r skipped: %s", thread_id, error)

    # -- inspection ---------------------------------------------------------------------------
    async def state(self, thread_id: str) -> StateSnapshot:
        return await self.graph.aget_state(self.config(thread_id))

    async def busy(self, thread_id: str) -> bool:
        """True while a run, in any process, holds the thread."""
        return await is_thread_busy(self.persistence.pool, validate_id(thread_id))

    async def pending_interrupts(self, thread_id: str) -> tuple[PendingInterrupt, ...]:
        return _interrupts(await self.state(thread_id))

    async def history(self, thread_id: str, *, limit: int = 50) -> list[CheckpointInfo]:
        """Checkpoints newest first, each with the nodes that produced it and the ones due next."""
        snapshots = [s async for s in self.graph.aget_state_history(self.config(thread_id), limit=limit)]
        by_id = {s.config["configurable"]["checkpoint_id"]: s for s in snapshots}
        infos = []
        for snap in snapshots:
            parent = await self._parent(snap, by_id)
            infos.append(
                CheckpointInfo(
                    checkpoint_id=snap.config["configurable"]["checkpoint_id"],
                    step=int((snap.metadata or {}).get("step", -1)),
                    created_at=snap.created_at,
                    source=str((snap.metadata or {}).get("source", "")),
                    ran=tuple(parent.next)
                    if parent and (snap.metadata or {}).get("source") == "loop"
                    else (),
                    next_nodes=tuple(snap.next),
                    messages=len(snap.values.get("messages") or []),
                )
            )
        return infos

    async def _parent(self, snap: StateSnapshot, known: dict[str, StateSnapshot]) -> StateSnapshot | None:
        parent_id = (snap.parent_config or {}).get("configurable", {}).get("checkpoint_id")
        if parent_id is None:
            return None
        if parent_id in known:
            return known[parent_id]
        return await self.graph.aget_state(snap.parent_config or {})

    async def threads(self, *, limit: int = 100) -> list[ThreadSummary]:
        return await list_threads(self.persistence.pool, limit=limit)

    async def entities(
        self, user_id: str | None = None, *, entity_type: str | None = None, limit: int = 1000
    ) -> list[EntityRecord]:
        """The user's entities, most mentioned first; `entity_type` (PERSON, ORG, ...) filters."""
        namespace = entity_namespace(self._user(user_id))
        wanted = entity_type.strip().upper() if entity_type else None
        if wanted is not None and not wanted.isidentifier():
            raise InvalidInput(f"Unknown entity type {entity_type!r}: use one of {', '.join(ENTITY_TYPES)}.")
        found = {"type": wanted} if wanted else None
        items = await self.persistence.store.asearch(namespace, filter=found, limit=limit)
        records = [EntityRecord.model_validate(item.value) for item in items]
        return sorted(records, key=lambda r: (-r.mentions, r.value.casefold()))

    # -- transcript ---------------------------------------------------------------------------
    async def transcript(self, thread_id: str) -> list[TranscriptEntry]:
        """Every message the thread ever had, oldest first, including those folded into its summary."""
        return await read_transcript(self.persistence.pool, thread_id)

    async def search(
        self, query: str, *, user_id: str | None = None, thread_id: str | None = None, limit: int = 20
    ) -> list[SearchHit]:
        """Full-text search over every archived message (web-search syntax), best match first."""
        return await search_transcript(
            self.persistence.pool,
            query,
            language=self.archive.language,
            user_id=user_id,
            thread_id=thread_id,
            limit=limit,
        )

    async def stats(self, user_id: str | None = None) -> UserStats:
        """Conversations, messages, tokens and remembered entities of a user (default: the configured)."""
        return await user_stats(self.persistence.pool, user_id or self.settings.user_id)

    async def forget(self, user_id: str) -> ForgetReport:
        """Delete a user's transcript, memories and threads; ThreadBusy (nothing deleted) while one runs."""
        return await forget_user(self.persistence.pool, self.persistence.checkpointer, user_id)

    # -- one entity, the profile ----------------------------------------------------------------
    async def entity(self, name: str, user_id: str | None = None) -> EntityMentions:
        """The entity called `name` (value, alias or a close spelling) and the messages that named it."""
        user = self._user(user_id)
        found = await find_entity(self.persistence.store, user, self._name(name))
        if found is None:
            raise _unknown_entity(name, user)
        record = found[1]
        mentions = await read_messages(self.persistence.pool, user, record.source_message_ids)
        return EntityMentions(record, mentions)

    async def forget_entity(self, name: str, user_id: str | None = None) -> EntityRecord:
        """Delete one remembered entity (the rest of the user's memory stays)."""
        user = self._user(user_id)
        forgotten = await forget_entity(self.persistence.store, user, self._name(name))
        if forgotten is None:
            raise _unknown_entity(name, user)
        return forgotten

    async def profile(self, user_id: str | None = None) -> UserProfile | None:
        """The user's profile document (name, language, style, interests, facts with their history)."""
        return await load_profile(self.persistence.store, self._user(user_id))

    def _user(self, user_id: str | None) -> str:
        return validate_user_id(user_id or self.settings.user_id)

    @staticmethod
    def _name(name: str) -> str:
        if not name.strip() or len(name) > MAX_VALUE_CHARS:
            raise InvalidInput(f"Give an entity name of 1-{MAX_VALUE_CHARS} characters.")
        return name

    async def _known_checkpoint(self, thread_id: str, checkpoint_id: str) -> RunnableConfig:
        config = self.config(thread_id, checkpoint_id)
        try:
            uuid.UUID(checkpoint_id)
        except ValueError:
            found = None
        else:  # a load error of a real row is not "unknown": it names its thread and checkpoint itself
            found = await self.persistence.checkpointer.aget_tuple(config)
        if found is None:
            raise UnknownCheckpoint(
                f"Thread {thread_id!r} has no checkpoint {checkpoint_id!r}: list them with "
                f"`convomem history --thread {thread_id}`."
            )
        return config


def _is_step_done(event: tuple[str, Any]) -> bool:
    """A "checkpoints" event: the previous step's state is saved, the next step not started."""
    return event[0] == "checkpoints"


def _is_reply_token(chunk: Any, metadata: Any) -> bool:
    """Only respond's tokens reach the user; the memory nodes' model calls stay silent."""
    return (
        metadata.get("langgraph_node") == "respond" and isinstance(chunk, AIMessageChunk) and bool(chunk.text)
    )


async def _last_event(events: AsyncIterator[TurnEvent]) -> TurnEnded:
    last: TurnEnded | None = None
    async for event in events:
        if isinstance(event, TurnEnded):
            last = event
    assert last is not None, "every run ends with TurnEnded"
    return last


def _step(snapshot: StateSnapshot) -> int | None:
    step = (snapshot.metadata or {}).get("step")
    return step if isinstance(step, int) else None


def _unknown_entity(name: str, user: str) -> InvalidInput:
    return InvalidInput(f"Nothing remembered as {name!r} for {user!r}: `convomem entities` lists them.")


def _user_facing(error: Exception) -> Exception:
    """Library errors as ConvomemError with a message saying what to do."""
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


@asynccontextmanager
async def open_convomem(
    settings: Settings | None = None,
    *,
    model: BaseChatModel | None = None,
    max_concurrent_runs: int = MAX_CONCURRENT_RUNS,
) -> AsyncIterator[Convomem]:
    """Start what is needed (embedded Postgres, local model) and yield a ready Convomem.

    `max_concurrent_runs` sizes the separate pool of lock connections (one held per running turn).
    """
    settings = settings or Settings()
    async with AsyncExitStack() as stack:
        persistence = await stack.enter_async_context(open_database(settings))
        url = await database_url(settings)
        lock_pool = await stack.enter_async_context(open_pool(url, max_size=max_concurrent_runs))
        archive = await open_transcript(persistence.pool, settings.transcript_language)
        chat_model = model or shared_chat_model(settings)
        builder = build_graph(
            chat_model,
            max_attempts=settings.model_retries,
            archive=archive,
            semantic=settings.semantic_memory,
        )
        graph = builder.compile(
            checkpointer=persistence.checkpointer, store=persistence.store, name="convomem"
        )
        yield Convomem(graph, persistence, settings, lock_pool, archive)


_ = State  # the graph's state type, re-exported for API users through graphs.state
