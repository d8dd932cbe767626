"""respond: the one node the user waits for; its tokens stream."""

from __future__ import annotations

import logging
from collections.abc import Mapping, Sequence
from typing import Any

import jsonschema_rs
from langchain_core.language_models import BaseChatModel
from langchain_core.messages import AIMessage, AnyMessage, SystemMessage
from langchain_core.runnables import Runnable
from langchain_core.tools import BaseTool
from langgraph.runtime import Runtime

from nodes.config import GraphConfig
from nodes.errors import ConfigError
from nodes.prompts import SUMMARY_HEADER, TOOLS_EXHAUSTED
from nodes.reply_schema import SchemaStyle, reply_format, schema_reply
from nodes.state import Context, Node, State, Update
from nodes.tokens import count_tokens, fit_window
from nodes.tool_loop import prompt_safe, rounds_used, settle_reply

__all__ = ["build_prompt", "make_respond"]

_log = logging.getLogger("convomem.respond")

SYSTEM_PART_SHARE = 4
"""Instructions, memory and summary may each take at most 1/4 of the budget: the conversation keeps 1/4."""


def _clip(text: str, max_tokens: int) -> str:
    return text if len(text) <= max_tokens * 4 else text[: max(max_tokens * 4 - 1, 0)] + "…"


def build_prompt(state: State, config: GraphConfig, *, note: str | None = None) -> list[AnyMessage]:
    """Instructions + memory + running summary + the newest working-set messages, under the budget.

    `note` is added to the instructions for this call only. Tool calls travel with their results: the
    window starts on a human message, and a call left without a result is not sent (prompt_safe)."""
    share = config.prompt_tokens // SYSTEM_PART_SHARE
    parts = [_clip(config.instructions, share)]
    if state.get("memory_context"):
        parts.append(_clip(state.get("memory_context", ""), min(share, config.memory_tokens)))
    if state.get("summary"):
        parts.append(_clip(f"{SUMMARY_HEADER}\n{state.get('summary', '')}", share))
    if note:
        parts.append(note)
    system = SystemMessage(content="\n\n".join(parts))
    room = config.prompt_tokens - count_tokens([system])
    return [system, *fit_window(prompt_safe(state["messages"]), room)]


def make_respond(
    model: BaseChatModel,
    config: GraphConfig,
    tools: Sequence[BaseTool] = (),
    *,
    response_schema: Mapping[str, Any] | None = None,
    schema_style: SchemaStyle = "json_schema",
) -> Node:
    """The instructions, budgets and reply parameters (temperature, max_tokens, frequency_penalty) are
    the graph's; a penalty left unset is not sent (the server's own default holds).

    With `tools` (and `config.tool_rounds` > 0) the model may call them for that many rounds a turn;
    the turn's last call is made without tools and told to answer. A model that cannot bind tools
    answers without them (logged), as if none were configured. With a `response_schema` (an
    assistant's) the answer, the call made without tools, is JSON under it, repaired once
    (nodes.reply_schema)."""
    penalty = {} if config.frequency_penalty is None else {"frequency_penalty": config.frequency_penalty}
    params: dict[str, Any] = {"temperature": config.temperature, "max_tokens": config.max_tokens, **penalty}
    shape = (
        {} if response_schema is None else {"response_format": reply_format(response_schema, schema_style)}
    )
    replier: Runnable[list[AnyMessage], Any] = model.bind(**params, **shape)
    validator = None if response_schema is None else jsonschema_rs.validator_for(dict(response_schema))
    caller: Runnable[list[AnyMessage], Any] | None = None
    opener: Runnable[list[AnyMessage], Any] | None = None
    forced = config.tool_choice if config.tool_choice != "auto" else None
    if forced is not None and forced not in {tool.name for tool in tools}:
        named = ", ".join(sorted(tool.name for tool in tools)) or "none"
        raise ConfigError(f"tool_choice names {forced!r}, which is not one of the tools ({named}).")
    if tools and config.tool_rounds:
        try:
            caller = model.bind_tools(list(tools)).bind(**params)
            opener = model.bind_tools(list(tools), tool_choice=forced).bind(**params) if forced else caller
        except Exception as error:  # NotImplementedError, or a provider refusing the schemas
            _log.warning("the model cannot call tools (%s): it answers without them", error)

    async def respond(state: State, runtime: Runtime[Context]) -> Update:
        """Answer the newest message; the reply's tokens stream through stream_mode='messages'."""
        rounds = rounds_used(state["messages"])
        may_call = caller is not None and rounds < config.tool_rounds
        if may_call:
            assert caller is not None and opener is not None
            prompt = build_prompt(state, config)
            reply = await (opener if rounds == 0 else caller).ainvoke(prompt)
            if validator is not None and isinstance(reply, AIMessage) and not reply.tool_calls:
                reply = await schema_reply(replier, prompt, validator, reply)  # an answer: under the schema
        else:
            note = TOOLS_EXHAUSTED if caller is not None else None
            prompt = build_prompt(state, config, note=note)
            if validator is not None:
                return {"messages": [await schema_reply(replier, prompt, validator)]}
            reply = await replier.ainvoke(prompt)
        if not tools or not isinstance(reply, AIMessage):  # no tools configured: the reply as it came
            return {"messages": [reply]}
        return {"messages": settle_reply(reply, may_call=may_call)}

    return respond
