"""The real conversation graph, configured and compiled for unit tests on InMemorySaver + InMemoryStore."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from langchain_core.language_models import BaseChatModel
from langchain_core.messages import AIMessage, AnyMessage, HumanMessage
from langchain_core.runnables import RunnableConfig
from langgraph.checkpoint.memory import InMemorySaver
from langgraph.store.memory import InMemoryStore

from graphs.conversation import build_graph, compile_graph
from graphs.turn_graph import TurnGraph, TurnRules
from nodes.config import GraphConfig

__all__ = ["CONFIG", "LONG", "history_messages", "unit_graph"]

CONFIG: RunnableConfig = {"configurable": {"thread_id": "t"}}
"""The thread unit tests run on."""
LONG = "word " * 80
"""About 100 tokens: a few such messages go over a small working-set budget."""


def history_messages(turns: int) -> list[AnyMessage]:
    """`turns` earlier long exchanges (ids old-h<n>, old-a<n>) to seed a thread's working set."""
    messages: list[AnyMessage] = []
    for n in range(turns):
        messages += [HumanMessage(f"q{n} {LONG}", id=f"old-h{n}"), AIMessage(f"a{n} {LONG}", id=f"old-a{n}")]
    return messages


def unit_graph(
    model: BaseChatModel,
    *,
    rules: bool = False,
    checkpointer: InMemorySaver | None = None,
    tools: Sequence[Any] = (),
    **config: Any,
) -> tuple[TurnGraph, InMemoryStore]:
    """build_graph(GraphConfig(**config), model) compiled with an in-memory saver and store.

    `rules=False` compiles the plain graph (tests seed state: several messages, a summary);
    `rules=True` builds in the rules of a turn without a database (TurnRules(config, pool=None)).
    """
    graph_config = GraphConfig(**config)
    store = InMemoryStore()
    graph = compile_graph(
        build_graph(graph_config, model, tools=tools),
        TurnRules(graph_config) if rules else None,
        checkpointer=checkpointer or InMemorySaver(),
        store=store,
    )
    return graph, store
