"""respond: the one node the user waits for; its tokens stream."""

from __future__ import annotations

from langchain_core.language_models import BaseChatModel
from langchain_core.messages import AnyMessage, SystemMessage
from langgraph.runtime import Runtime

from nodes.prompts import SUMMARY_HEADER
from nodes.state import Context, Node, State, Update
from nodes.tokens import count_tokens, fit_window

__all__ = ["build_prompt", "make_respond"]

REPLY_RESERVE_TOKENS = 512


def build_prompt(state: State, context: Context) -> list[AnyMessage]:
    """Instructions + memory + running summary + the newest working-set messages, under the budget."""
    parts = [context.instructions]
    if state.get("memory_context"):
        parts.append(state.get("memory_context", ""))
    if state.get("summary"):
        parts.append(f"{SUMMARY_HEADER}\n{state.get('summary', '')}")
    system = SystemMessage(content="\n\n".join(parts))
    room = (
        context.prompt_tokens - count_tokens([system]) - min(REPLY_RESERVE_TOKENS, context.prompt_tokens // 4)
    )
    return [system, *fit_window(state["messages"], room)]


def make_respond(model: BaseChatModel) -> Node:
    async def respond(state: State, runtime: Runtime[Context]) -> Update:
        """Answer the newest message; the reply's tokens stream through stream_mode='messages'."""
        reply = await model.ainvoke(build_prompt(state, runtime.context))
        return {"messages": [reply]}

    return respond
