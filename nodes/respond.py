"""respond: the one node the user waits for; its tokens stream."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import jsonschema_rs
from langchain_core.language_models import BaseChatModel
from langchain_core.messages import AnyMessage, SystemMessage
from langchain_core.runnables import Runnable
from langgraph.runtime import Runtime

from nodes.config import GraphConfig
from nodes.prompts import SUMMARY_HEADER
from nodes.reply_schema import SchemaStyle, reply_format, schema_reply
from nodes.state import Context, Node, State, Update
from nodes.tokens import count_tokens, fit_window

__all__ = ["build_prompt", "make_respond"]

SYSTEM_PART_SHARE = 4
"""Instructions, memory and summary may each take at most 1/4 of the budget: the conversation keeps 1/4."""


def _clip(text: str, max_tokens: int) -> str:
    return text if len(text) <= max_tokens * 4 else text[: max(max_tokens * 4 - 1, 0)] + "…"


def build_prompt(state: State, config: GraphConfig) -> list[AnyMessage]:
    """Instructions + memory + running summary + the newest working-set messages, under the budget."""
    share = config.prompt_tokens // SYSTEM_PART_SHARE
    parts = [_clip(config.instructions, share)]
    if state.get("memory_context"):
        parts.append(_clip(state.get("memory_context", ""), min(share, config.memory_tokens)))
    if state.get("summary"):
        parts.append(_clip(f"{SUMMARY_HEADER}\n{state.get('summary', '')}", share))
    system = SystemMessage(content="\n\n".join(parts))
    room = config.prompt_tokens - count_tokens([system])
    return [system, *fit_window(state["messages"], room)]


def make_respond(
    model: BaseChatModel,
    config: GraphConfig,
    *,
    response_schema: Mapping[str, Any] | None = None,
    schema_style: SchemaStyle = "json_schema",
) -> Node:
    """The instructions, budgets and reply parameters (temperature, max_tokens, frequency_penalty) are
    the graph's; a penalty left unset is not sent (the server's own default holds). With a
    `response_schema` (an assistant's) the reply is JSON under it, repaired once (nodes.reply_schema)."""
    penalty = {} if config.frequency_penalty is None else {"frequency_penalty": config.frequency_penalty}
    shape = (
        {} if response_schema is None else {"response_format": reply_format(response_schema, schema_style)}
    )
    replier: Runnable[list[AnyMessage], Any] = model.bind(
        temperature=config.temperature, max_tokens=config.max_tokens, **penalty, **shape
    )
    validator = None if response_schema is None else jsonschema_rs.validator_for(dict(response_schema))

    async def respond(state: State, runtime: Runtime[Context]) -> Update:
        """Answer the newest message; the reply's tokens stream through stream_mode='messages'."""
        prompt = build_prompt(state, config)
        if validator is not None:
            return {"messages": [await schema_reply(replier, prompt, validator)]}
        reply = await replier.ainvoke(prompt)
        return {"messages": [reply]}

    return respond
