"""Building the graph from Settings, once, the same way for the Python API, the CLI and LangGraph Server."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator, Mapping, Sequence
from contextlib import AsyncExitStack, asynccontextmanager
from dataclasses import dataclass

from langchain_core.language_models import BaseChatModel
from langchain_core.tools import BaseTool
from langgraph.graph import StateGraph

from checkpoint.compaction import compact_thread
from checkpoint.passage_vectors import EmbeddingArchive
from checkpoint.persistence import Pool, open_pool
from checkpoint.recall import TranscriptRecall
from checkpoint.transcript import TranscriptArchive, open_transcript, search_transcript
from graphs.assistants import AssistantFile, AssistantRegistry, load_assistants
from graphs.conversation import build_graph, utc_now
from graphs.database import database_url
from graphs.models import embedding_model, shared_chat_model, shared_recognizer
from graphs.settings import Settings, graph_config
from graphs.tool_specs import load_tool
from graphs.tracing import otlp_tracer
from graphs.turn_graph import TurnRules
from nodes.config import for_model
from nodes.errors import ConfigError, InvalidInput
from nodes.memory_tools import (
    BUILTIN_TOOLS,
    ConversationSearch,
    FoundMessage,
    make_memory_tools,
    select_builtin_tools,
)
from nodes.reduce_history import Compact
from nodes.state import Context, State
from nodes.tool_loop import ToolLike

__all__ = [
    "GraphParts",
    "assistant_models",
    "assistant_tools",
    "builtin_tools",
    "compactor",
    "open_assistants",
    "open_graph_parts",
    "transcript_search",
]

_log = logging.getLogger("convomem.assistants")


@dataclass(frozen=True)
class GraphParts:
    """The configured builder and what it was given: compile it with compile_graph(builder, rules)."""

    builder: StateGraph[State, Context, State, State]
    rules: TurnRules
    archive: TranscriptArchive
    pool: Pool


def compactor(pool: Pool, *, keep_recent_runs: int) -> Compact:
    """reduce_history's compaction: older turns keep only their last checkpoint. It runs inside the
    turn, which already is the thread's only writer (the API's lock, LangGraph Server's run queue)."""

    async def compact(thread_id: str) -> None:
        await compact_thread(pool, thread_id, keep_recent_runs=keep_recent_runs, lock=False, measure=False)

    return compact


def open_assistants(settings: Settings) -> AssistantRegistry:
    """The assistant files of CONVOMEM_ASSISTANTS_DIR, all valid, and CONVOMEM_ASSISTANT one of them."""
    registry = load_assistants(settings.assistants_folder)
    try:
        registry.check_name(settings.assistant)
    except InvalidInput as error:
        raise ConfigError(f"CONVOMEM_ASSISTANT: {error}") from None
    return registry


def assistant_models(settings: Settings, registry: AssistantRegistry) -> dict[str, BaseChatModel]:
    """A chat model for each assistant that names its own (same server and key, another model name).

    The embedded model serves one model: there an assistant's model name is ignored, and said so."""
    named = {name: a.model for name, a in registry.assistants.items() if a.model}
    if named and settings.uses_local_model:
        _log.warning("the embedded model ignores the model of assistants %s", ", ".join(sorted(named)))
        return {}
    return {name: shared_chat_model(settings.model_copy(update={"model": m})) for name, m in named.items()}


def assistant_tools(
    registry: AssistantRegistry, search: ConversationSearch | None
) -> dict[str, list[BaseTool]]:
    """The tools of each assistant that names its own (built-in names, `package.module:attribute`);
    an assistant without `tools` gets the process's."""
    builtins = {t.name: t for t in make_memory_tools(search=search, clock=utc_now, names=BUILTIN_TOOLS)}
    return {
        name: resolve_tools(assistant, builtins)
        for name, assistant in registry.assistants.items()
        if assistant.tools is not None
    }


def resolve_tools(assistant: AssistantFile, builtins: Mapping[str, BaseTool]) -> list[BaseTool]:
    """An assistant's tool names as tools (the file's names were checked when it was read)."""
    return [builtins[spec] if spec in builtins else load_tool(spec) for spec in assistant.tools or ()]


def transcript_search(pool: Pool, language: str) -> ConversationSearch:
    """search_conversations' search: the transcript's full-text search, one user at a time."""

    async def search(query: str, *, user_id: str, thread_id: str | None, limit: int) -> list[FoundMessage]:
        hits = await search_transcript(
            pool, query, language=language, user_id=user_id, thread_id=thread_id, limit=limit
        )
        return [FoundMessage(h.thread_id, h.role, h.created_at.isoformat(), h.snippet) for h in hits]

    return search


def builtin_tools(settings: Settings, search: ConversationSearch | None, *, local: bool) -> list[ToolLike]:
    """The built-in memory tools CONVOMEM_TOOLS selects; "auto" is all of them, except on the embedded
    model, which cannot call tools reliably (it answers without)."""
    selection = "none" if settings.tools.strip() == "auto" and local else settings.tools
    chosen = select_builtin_tools("all" if selection.strip() == "auto" else selection)
    return list(make_memory_tools(search=search, clock=utc_now, names=chosen))


@asynccontextmanager
async def open_graph_parts(
    settings: Settings,
    *,
    pool: Pool | None = None,
    model: BaseChatModel | None = None,
    max_connections: int = 4,
    tools: Sequence[ToolLike] = (),
) -> AsyncIterator[GraphParts]:
    """Configuration, model, transcript archive, compaction and tools, wired into one builder.

    `pool` is the database the graph's own writes go to (transcript, compaction, undoing a failed run);
    without one, a small pool of `max_connections` is opened for as long as the parts are used.
    `tools` (LangChain tools or documented functions) are offered to the model after the built-in
    memory tools that CONVOMEM_TOOLS selects.
    """
    local = model is None and settings.uses_local_model
    # The embedded model's defaults (extraction method, recognizer, reply penalty) only when it is the one
    # used: a `model` handed in (tests, benchmarks) or a configured server gets the remote defaults.
    config = for_model(graph_config(settings), local=local)
    assistants = await asyncio.to_thread(open_assistants, settings)  # reads files: off the event loop
    async with AsyncExitStack() as stack:
        if pool is None:
            url = await database_url(settings)
            pool = await stack.enter_async_context(open_pool(url, max_size=max_connections))
        archive = await open_transcript(pool, settings.transcript_language)
        chat_model = model if model is not None else await asyncio.to_thread(shared_chat_model, settings)
        required = settings.entity_recognizer == "spacy"  # asked for, not the embedded model's default
        recognizer = await asyncio.to_thread(shared_recognizer, config.entity_recognizer, required=required)
        embeddings = embedding_model(settings)  # hybrid recall: passages embedded when archived
        search = transcript_search(pool, archive.language)
        builder = build_graph(
            config,
            chat_model,
            archive=archive if embeddings is None else EmbeddingArchive(archive, embeddings),
            compact=compactor(pool, keep_recent_runs=config.step_history_turns),
            recognizer=recognizer,
            passages=TranscriptRecall(pool, archive.language, embeddings),
            tools=[*builtin_tools(settings, search, local=local), *tools],
            assistants=assistants,
            # A model handed in (tests, benchmarks) answers for every assistant.
            assistant_models={} if model is not None else assistant_models(settings, assistants),
            assistant_tools=assistant_tools(assistants, search),
            schema_style="json_object" if local else "json_schema",
        )
        rules = TurnRules(
            config,
            pool,
            assistants=assistants,
            default_assistant=settings.assistant,
            clock=utc_now,
            tracer=otlp_tracer(),
        )
        yield GraphParts(builder, rules, archive, pool)
