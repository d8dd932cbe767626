"""Building the graph from Settings, once, the same way for the Python API, the CLI and LangGraph Server."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator
from contextlib import AsyncExitStack, asynccontextmanager
from dataclasses import dataclass

from langchain_core.language_models import BaseChatModel
from langgraph.graph import StateGraph

from checkpoint.compaction import compact_thread
from checkpoint.passage_vectors import EmbeddingArchive
from checkpoint.persistence import Pool, open_pool
from checkpoint.recall import TranscriptRecall
from checkpoint.transcript import TranscriptArchive, open_transcript
from graphs.assistants import AssistantRegistry, load_assistants
from graphs.conversation import build_graph
from graphs.database import database_url
from graphs.models import embedding_model, shared_chat_model, shared_recognizer
from graphs.settings import Settings, graph_config
from graphs.turn_graph import TurnRules
from nodes.config import for_model
from nodes.errors import ConfigError, InvalidInput
from nodes.reduce_history import Compact
from nodes.state import Context, State

__all__ = ["GraphParts", "assistant_models", "compactor", "open_assistants", "open_graph_parts"]

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


@asynccontextmanager
async def open_graph_parts(
    settings: Settings,
    *,
    pool: Pool | None = None,
    model: BaseChatModel | None = None,
    max_connections: int = 4,
) -> AsyncIterator[GraphParts]:
    """Configuration, model, transcript archive and compaction, wired into one builder.

    `pool` is the database the graph's own writes go to (transcript, compaction, undoing a failed run);
    without one, a small pool of `max_connections` is opened for as long as the parts are used.
    """
    # The embedded model's defaults (extraction method, recognizer, reply penalty) only when it is the one
    # used: a `model` handed in (tests, benchmarks) or a configured server gets the remote defaults.
    local = model is None and settings.uses_local_model
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
        builder = build_graph(
            config,
            chat_model,
            archive=archive if embeddings is None else EmbeddingArchive(archive, embeddings),
            compact=compactor(pool, keep_recent_runs=config.step_history_turns),
            recognizer=recognizer,
            passages=TranscriptRecall(pool, archive.language, embeddings),
            assistants=assistants,
            # A model handed in (tests, benchmarks) answers for every assistant.
            assistant_models={} if model is not None else assistant_models(settings, assistants),
            schema_style="json_object" if local else "json_schema",
        )
        rules = TurnRules(config, pool, assistants=assistants, default_assistant=settings.assistant)
        yield GraphParts(builder, rules, archive, pool)
