"""The peer baseline: the memory recipe a LangGraph user assembles from LangMem for the same job.

START → summarize → respond → remember, compiled on upstream's AsyncPostgresSaver and AsyncPostgresStore
over one pool set up like convomem's:
- summarize: LangMem's `SummarizationNode` as its docs show it (running summary in `context`, the
  messages for the model in `summarized_messages`, the full history kept in `messages`), with convomem's
  working-set budget;
- respond: LangMem's search tool (`create_search_memory_tool`) looks up the user's memories in the store
  for the newest message; the model gets the instructions, those memories and the summarized messages;
- remember: the memory-agent template's pattern with LangMem's manage tool: the model, given
  `create_manage_memory_tool`, calls it, and every call is run against the store (one memory a turn).
The namespace is ("memories", "{langgraph_user_id}"), as LangMem's docs write it: the user comes in the
run's `configurable`.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

from langchain_core.language_models import BaseChatModel
from langchain_core.messages import AnyMessage, HumanMessage, SystemMessage
from langgraph.checkpoint.postgres.aio import AsyncPostgresSaver
from langgraph.checkpoint.serde.jsonplus import JsonPlusSerializer
from langgraph.graph import START, MessagesState, StateGraph
from langgraph.graph.state import CompiledStateGraph
from langgraph.store.postgres.aio import AsyncPostgresStore
from langmem import create_manage_memory_tool, create_search_memory_tool
from langmem.short_term import SummarizationNode

from checkpoint.persistence import _stop_batch_task, open_pool
from nodes.prompts import DEFAULT_INSTRUCTIONS

__all__ = ["NAMESPACE", "RecipeState", "build_recipe", "open_recipe"]

NAMESPACE = ("memories", "{langgraph_user_id}")
WORKING_SET_TOKENS = 1500
"""convomem's default working-set budget (nodes/config.py), so both summarize at the same size."""
SUMMARY_TOKENS = 256
MEMORIES_SHOWN = 5
SUMMARY_TYPE = ("langmem.short_term.summarization", "RunningSummary")
"""The one non-LangChain type in the recipe's state; allowed as LangGraph's msgpack warning tells users."""
REMEMBER_INSTRUCTIONS = "Save one memory of what the user said that is worth keeping across conversations."


class RecipeState(MessagesState):
    summarized_messages: list[AnyMessage]
    context: dict[str, Any]


def build_recipe(model: BaseChatModel) -> StateGraph[Any, Any, Any, Any]:
    search_memory = create_search_memory_tool(NAMESPACE)
    manage_memory = create_manage_memory_tool(NAMESPACE, actions_permitted=("create", "update", "delete"))
    extractor = model.bind_tools([manage_memory])

    async def respond(state: RecipeState) -> dict[str, Any]:
        newest = state["messages"][-1]
        memories = await search_memory.ainvoke({"query": str(newest.content), "limit": MEMORIES_SHOWN})
        system = SystemMessage(content=f"{DEFAULT_INSTRUCTIONS}\n\nMemories about the user:\n{memories}")
        reply = await model.ainvoke([system, *state["summarized_messages"]])
        return {"messages": [reply]}

    async def remember(state: RecipeState) -> dict[str, Any]:
        newest = next(m for m in reversed(state["messages"]) if isinstance(m, HumanMessage))
        request = await extractor.ainvoke([SystemMessage(content=REMEMBER_INSTRUCTIONS), newest])
        await asyncio.gather(*(manage_memory.ainvoke(call["args"]) for call in request.tool_calls))
        return {}

    builder: StateGraph[Any, Any, Any, Any] = StateGraph(RecipeState)
    builder.add_node(
        "summarize",
        SummarizationNode(
            model=model,
            max_tokens=WORKING_SET_TOKENS,
            max_tokens_before_summary=WORKING_SET_TOKENS,
            max_summary_tokens=SUMMARY_TOKENS,
        ),
    )
    builder.add_node("respond", respond)
    builder.add_node("remember", remember)
    builder.add_edge(START, "summarize")
    builder.add_edge("summarize", "respond")
    builder.add_edge("respond", "remember")
    return builder


@asynccontextmanager
async def open_recipe(
    url: str, model: BaseChatModel, *, max_size: int = 10
) -> AsyncIterator[CompiledStateGraph[Any, Any, Any, Any]]:
    """The recipe compiled on upstream's saver and store, sharing one pool set up like convomem's."""
    async with open_pool(url, max_size=max_size) as pool:
        saver = AsyncPostgresSaver(pool, serde=JsonPlusSerializer(allowed_msgpack_modules=[SUMMARY_TYPE]))
        store = AsyncPostgresStore(pool)
        await saver.setup()
        await store.setup()
        try:
            yield build_recipe(model).compile(checkpointer=saver, store=store)
        finally:
            await _stop_batch_task(store)
