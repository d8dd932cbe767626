"""The conversation graph: load_memory → respond ⇄ tools → (extract_entities ∥ summarize) → reduce_history."""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Mapping, Sequence
from contextlib import AsyncExitStack
from datetime import UTC, datetime
from typing import Any, NamedTuple

from langchain_core.language_models import BaseChatModel
from langchain_core.tools import BaseTool
from langgraph.checkpoint.base import BaseCheckpointSaver
from langgraph.graph import END, START, StateGraph
from langgraph.store.base import BaseStore
from langgraph.types import RetryPolicy

from graphs.assistants import AssistantRegistry
from graphs.turn_graph import TurnGraph, TurnRules
from nodes.config import GraphConfig
from nodes.extract_entities import make_extract_entities
from nodes.load_memory import make_load_memory
from nodes.models import is_transient_model_error
from nodes.per_assistant import per_assistant
from nodes.recall import PassageSearch
from nodes.recognizer import Recognizer
from nodes.reduce_history import Archive, Compact, make_reduce_history
from nodes.reply_schema import SchemaStyle
from nodes.respond import make_respond
from nodes.state import Clock, Context, Node, State
from nodes.summarize import make_summarize
from nodes.tool_loop import MEMORY_NODES, ToolLike, as_tools, make_tool_node, route_after_respond

__all__ = [
    "NODES",
    "TOOL_NODE",
    "build_graph",
    "compile_graph",
    "model_retry_policy",
    "server_graph",
    "utc_now",
]

NODES = ("load_memory", "respond", "extract_entities", "summarize", "reduce_history")
"""The nodes of every turn; a graph given tools also has TOOL_NODE."""
TOOL_NODE = "tools"
SERVER_CONNECTIONS = 4
"""The server graph's own pool: transcript archive, compaction and undoing failed runs."""


class _Variant(NamedTuple):
    """What one assistant's nodes are built from (the process's own: the `None` assistant)."""

    config: GraphConfig
    model: BaseChatModel
    schema: Mapping[str, Any] | None
    tools: list[BaseTool]


def utc_now() -> datetime:
    """The clock the composition root gives the nodes that stamp times."""
    return datetime.now(UTC)


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
    config: GraphConfig,
    model: BaseChatModel,
    *,
    memory_model: BaseChatModel | None = None,
    archive: Archive | None = None,
    compact: Compact | None = None,
    clock: Clock = utc_now,
    recognizer: Recognizer | None = None,
    passages: PassageSearch | None = None,
    tools: Sequence[ToolLike] = (),
    assistants: AssistantRegistry | None = None,
    assistant_models: Mapping[str, BaseChatModel] | None = None,
    assistant_tools: Mapping[str, Sequence[ToolLike]] | None = None,
    schema_style: SchemaStyle = "json_schema",
) -> StateGraph[State, Context, State, State]:
    """The uncompiled builder, configured once; callers compile it with compile_graph.

    `archive` keeps every message in the transcript before reduce_history drops it from the working
    set (checkpoint.transcript.TranscriptArchive); without one, folded messages survive only in the
    summary. `compact` drops old step checkpoints every `config.compact_every` turns. `recognizer` is
    extraction's offline first pass (config.entity_recognizer says whether the composition root made one).
    `passages` searches the user's other conversations (checkpoint.recall.TranscriptRecall) for
    load_memory; without one, memory holds no passages.
    `tools` (LangChain tools or documented functions) make respond ⇄ tools a loop of at most
    `config.tool_rounds` rounds; without any the graph is respond → memory nodes, as before tools.

    `assistants` each get their own load_memory, respond, extract_entities and summarize, built from the
    configuration with the assistant's overrides (its model from `assistant_models`, its tools from
    `assistant_tools` else `tools`, its response schema sent as `schema_style`); the run's
    `context.assistant` picks them (nodes.per_assistant). The tools node runs every assistant's tools.
    """
    memory_model = memory_model or model
    attempts = config.model_retries
    semantic = config.semantic_memory
    callable_tools = as_tools(tools)
    variants: dict[str | None, _Variant] = {None: _Variant(config, model, None, callable_tools)}
    for name, assistant in (assistants.assistants if assistants else {}).items():
        chat = (assistant_models or {}).get(name, model)
        own = (assistant_tools or {}).get(name)
        chosen = callable_tools if own is None else as_tools(own)
        variant_config = assistant.graph_config(config, tool_names=[t.name for t in chosen])
        variants[name] = _Variant(variant_config, chat, assistant.response_schema, chosen)
    every_tool = list({t.name: t for v in variants.values() for t in v.tools}.values())

    def each(make: Callable[[_Variant], Node]) -> Node:
        return per_assistant({name: make(variant) for name, variant in variants.items()})

    builder = StateGraph(State, context_schema=Context)
    style = "list" if config.memory_style == "auto" else config.memory_style
    load = each(
        lambda v: make_load_memory(
            memory_tokens=v.config.memory_tokens,
            default_user_id=config.user_id,
            semantic=semantic,
            style=style,
            passages=passages,
            recall_passages=v.config.recall_passages,
        )
    )
    builder.add_node("load_memory", load)
    respond = each(
        lambda v: make_respond(
            v.model, v.config, v.tools, response_schema=v.schema, schema_style=schema_style
        )
    )
    builder.add_node("respond", respond, retry_policy=model_retry_policy(attempts))
    # Memory nodes retry inside and never fail a turn; only respond's failure undoes the turn.
    extract = each(
        lambda v: make_extract_entities(
            memory_model,
            clock=clock,
            extract_every=v.config.extract_every,
            new_content_only=v.config.extract_on_new_content_only,
            max_attempts=attempts,
            semantic=semantic,
            method="function_calling" if config.extraction_method == "auto" else config.extraction_method,
            examples=bool(config.extraction_examples),
            recognizer=recognizer,
        )
    )
    builder.add_node("extract_entities", extract)
    summarize = each(
        lambda v: make_summarize(
            memory_model, working_set_tokens=v.config.working_set_tokens, max_attempts=attempts
        )
    )
    builder.add_node("summarize", summarize)
    reduce = make_reduce_history(archive, compact=compact, compact_every=config.compact_every)
    builder.add_node("reduce_history", reduce)
    builder.add_edge(START, "load_memory")
    builder.add_edge("load_memory", "respond")
    if every_tool:
        tool_node = make_tool_node(every_tool, timeout_seconds=config.tool_timeout_seconds)
        builder.add_node(TOOL_NODE, tool_node)
        builder.add_conditional_edges("respond", route_after_respond, [TOOL_NODE, "respond", *MEMORY_NODES])
        builder.add_edge(TOOL_NODE, "respond")
    else:
        builder.add_edge("respond", "extract_entities")
        builder.add_edge("respond", "summarize")
    builder.add_edge(["extract_entities", "summarize"], "reduce_history")
    builder.add_edge("reduce_history", END)
    return builder


def compile_graph(
    builder: StateGraph[State, Context, State, State],
    rules: TurnRules | None,
    *,
    checkpointer: BaseCheckpointSaver[Any] | None = None,
    store: BaseStore | None = None,
) -> TurnGraph:
    """The compiled graph with the rules of a turn built in (TurnGraph); the same on every path."""
    compiled = builder.compile(checkpointer=checkpointer, store=store, name="convomem")
    # As Pregel.copy() does, with the subclass: pinned by tests/unit/test_turn_graph.py.
    attrs = {key: value for key, value in compiled.__dict__.items() if key != "__orig_class__"}
    return TurnGraph(rules=rules, **attrs)


_served: list[TurnGraph] = []
_serving = AsyncExitStack()
"""The server graph's own pool and local model, open for the life of the process (never exited)."""
_building = asyncio.Lock()


async def server_graph() -> TurnGraph:
    """The graph LangGraph Server runs (langgraph.json), built once per process on first use.

    Built exactly as open_convomem builds it (graphs.composition), from the same Settings; compiled
    without a checkpointer: the server injects the one named in langgraph.json. A factory rather than a
    module-level value so that importing this module starts no model server.
    """
    async with _building:
        if not _served:
            from graphs.composition import open_graph_parts
            from graphs.logs import configure_logging
            from graphs.settings import Settings

            settings = Settings()
            configure_logging(settings.log_level or "warning", settings.log_format)
            try:
                parts = await _serving.enter_async_context(
                    open_graph_parts(settings, max_connections=SERVER_CONNECTIONS)
                )
            except BaseException:
                await _serving.aclose()
                raise
            _served.append(compile_graph(parts.builder, parts.rules))
    return _served[0]
