"""What a user would otherwise build: a MessagesState graph with one respond node on AsyncPostgresSaver.

`bare` keeps the whole history in an add_messages channel (each checkpoint re-writes the full list);
`delta` declares the same channel as LangGraph's beta DeltaChannel with the batch reducer its docs give,
so checkpoints store writes and reconstruction replays them from the last snapshot. Both send the same
instructions plus the full history to the model on every turn, as the recipe does.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Annotated, Any, Literal

from langchain_core.language_models import BaseChatModel
from langchain_core.messages import AnyMessage, SystemMessage
from langgraph.channels.delta import DeltaChannel
from langgraph.checkpoint.postgres.aio import AsyncPostgresSaver
from langgraph.graph import START, MessagesState, StateGraph
from langgraph.graph.message import _messages_delta_reducer
from langgraph.graph.state import CompiledStateGraph
from typing_extensions import TypedDict

from checkpoint.persistence import open_pool
from nodes.prompts import DEFAULT_INSTRUCTIONS

__all__ = ["BaselineKind", "DeltaMessagesState", "build_baseline", "open_baseline"]

BaselineKind = Literal["bare", "delta"]


class DeltaMessagesState(TypedDict):
    """MessagesState with the messages channel stored as deltas (the declaration in DeltaChannel's docs;
    the batch reducer is upstream's, exported under a private name while the channel is beta)."""

    # Upstream detail: `_messages_delta_reducer` is private in langgraph.graph.message; pinned by
    # tests/unit/test_upstream_pins.py::test_messages_delta_reducer_is_a_delta_batch_reducer.
    messages: Annotated[list[AnyMessage], DeltaChannel(_messages_delta_reducer)]


def build_baseline(model: BaseChatModel, kind: BaselineKind) -> StateGraph[Any, Any, Any, Any]:
    """START → respond: the model gets the instructions and the whole history, its reply is appended."""

    async def respond(state: Any) -> dict[str, Any]:
        reply = await model.ainvoke([SystemMessage(content=DEFAULT_INSTRUCTIONS), *state["messages"]])
        return {"messages": [reply]}

    schema: Any = MessagesState if kind == "bare" else DeltaMessagesState
    builder: StateGraph[Any, Any, Any, Any] = StateGraph(schema)
    builder.add_node("respond", respond)
    builder.add_edge(START, "respond")
    return builder


@asynccontextmanager
async def open_baseline(
    url: str, model: BaseChatModel, kind: BaselineKind, *, max_size: int = 10
) -> AsyncIterator[CompiledStateGraph[Any, Any, Any, Any]]:
    """The baseline compiled on upstream's AsyncPostgresSaver over a pool set up like convomem's."""
    async with open_pool(url, max_size=max_size) as pool:
        saver = AsyncPostgresSaver(pool)
        await saver.setup()
        yield build_baseline(model, kind).compile(checkpointer=saver)
