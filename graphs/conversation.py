"""The conversation graph: load_memory → respond → (extract_entities ∥ summarize) → reduce_history."""

from __future__ import annotations

import asyncio
from contextlib import AsyncExitStack

from langchain_core.language_models import BaseChatModel
from langgraph.graph import END, START, StateGraph
from langgraph.graph.state import CompiledStateGraph
from langgraph.types import RetryPolicy

from nodes.extract_entities import make_extract_entities
from nodes.load_memory import make_load_memory
from nodes.models import is_transient_model_error
from nodes.reduce_history import Archive, make_reduce_history
from nodes.respond import make_respond
from nodes.state import Context, State
from nodes.summarize import make_summarize

__all__ = ["NODES", "build_graph", "model_retry_policy", "server_graph"]

SERVER_TRANSCRIPT_CONNECTIONS = 4
NODES = ("load_memory", "respond", "extract_entities", "summarize", "reduce_history")


def model_retry_policy(max_attempts: int = 3) -> RetryPolicy:
    """Bounded exponential backoff on transient model errors only (connection, timeout, 429, 5xx)."""
    return RetryPolicy(
        max_attempts=max_attempts,
        initial_interval=0.5,
        backoff_factor=2.0,
        max_interval=8.0,
        retry_on=is_transient_model_error,
    )


def build_graph(
    model: BaseChatModel,
    *,
    memory_model: BaseChatModel | None = None,
    max_attempts: int = 3,
    archive: Archive | None = None,
    semantic: bool = False,
) -> StateGraph[State, Context, State, State]:
    """The uncompiled builder; callers compile it with their own checkpointer and store.

    `archive` keeps every message in the transcript before reduce_history drops it from the working
    set (checkpoint.transcript.TranscriptArchive); without one, folded messages survive only in the
    summary. `semantic` matches entities by meaning too; the store must have a vector index.
    """
    memory_model = memory_model or model
    retry = model_retry_policy(max_attempts)
    builder = StateGraph(State, context_schema=Context)
    builder.add_node("load_memory", make_load_memory(semantic=semantic))
    builder.add_node("respond", make_respond(model), retry_policy=retry)
    # Memory nodes retry inside and never fail a turn; only respond's failure undoes the turn.
    extract = make_extract_entities(memory_model, max_attempts=max_attempts, semantic=semantic)
    builder.add_node("extract_entities", extract)
    builder.add_node("summarize", make_summarize(memory_model, max_attempts=max_attempts))
    builder.add_node("reduce_history", make_reduce_history(archive))
    builder.add_edge(START, "load_memory")
    builder.add_edge("load_memory", "respond")
    builder.add_edge("respond", "extract_entities")
    builder.add_edge("respond", "summarize")
    builder.add_edge(["extract_entities", "summarize"], "reduce_history")
    builder.add_edge("reduce_history", END)
    return builder


_served: list[CompiledStateGraph[State, Context, State, State]] = []
_serving = AsyncExitStack()
"""The server graph's own transcript pool, open for the life of the process (never exited)."""
_building = asyncio.Lock()


async def server_graph() -> CompiledStateGraph[State, Context, State, State]:
    """The graph LangGraph Server runs (langgraph.json), built once per process on first use.

    Compiled without a checkpointer: the server injects the one named in langgraph.json. A factory
    rather than a module-level value so that importing this module starts no model server; the local
    model starts off the event loop. The transcript gets a small pool of its own, open as long as the
    process: the checkpointer's and the store's pools belong to their factories (graphs/server.py).
    """
    async with _building:
        if not _served:
            from checkpoint.persistence import open_pool
            from checkpoint.transcript import open_transcript
            from graphs.database import database_url
            from graphs.models import shared_chat_model
            from graphs.settings import Settings

            settings = Settings()
            pool = await _serving.enter_async_context(
                open_pool(await database_url(settings), max_size=SERVER_TRANSCRIPT_CONNECTIONS)
            )
            try:
                archive = await open_transcript(pool, settings.transcript_language)
            except BaseException:
                await _serving.aclose()
                raise
            model = await asyncio.to_thread(shared_chat_model, settings)
            builder = build_graph(
                model, max_attempts=settings.model_retries, archive=archive, semantic=settings.semantic_memory
            )
            _served.append(builder.compile(name="convomem"))
    return _served[0]
