"""reduce_history: remove the messages summarize folded, so checkpoints stay small."""

from __future__ import annotations

from langchain_core.messages import RemoveMessage
from langgraph.runtime import Runtime

from nodes.state import Context, Node, State, Update

__all__ = ["make_reduce_history"]


def make_reduce_history() -> Node:
    async def reduce_history(state: State, runtime: Runtime[Context]) -> Update:
        """RemoveMessage for every folded id still present; a re-run removes nothing twice."""
        folded = set(state.get("summarized_ids") or [])
        if not folded:
            return {}
        present = [m.id for m in state["messages"] if m.id in folded]
        return {"messages": [RemoveMessage(id=i) for i in present if i], "summarized_ids": []}

    return reduce_history
