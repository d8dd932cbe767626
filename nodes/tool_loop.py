"""respond ⇄ tools: the bounded loop's pure rules and its ToolNode (timeouts, errors as tool messages)."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import Awaitable, Callable, Sequence
from typing import Any

from langchain_core.messages import AIMessage, AnyMessage, HumanMessage, ToolMessage
from langchain_core.tools import BaseTool, tool
from langgraph.prebuilt import ToolNode
from langgraph.prebuilt.tool_node import ToolCallRequest, ToolInvocationError
from langgraph.types import Command, Send

from nodes.errors import ConfigError
from nodes.prompts import TOOLS_GAVE_UP
from nodes.state import State

__all__ = [
    "MAX_TOOL_RESULT_CHARS",
    "MEMORY_NODES",
    "ToolLike",
    "as_tools",
    "make_tool_node",
    "prompt_safe",
    "rounds_used",
    "route_after_respond",
    "settle_reply",
]

ToolLike = BaseTool | Callable[..., Any]
"""What a caller may hand over as a tool: a LangChain tool, or a plain (async) function with a docstring."""

MEMORY_NODES = ("extract_entities", "summarize")
"""Where a turn goes once respond has answered without calling a tool."""

MAX_TOOL_RESULT_CHARS = 2000
"""A tool's result is cut to this before it reaches the model: one chatty tool cannot eat the prompt."""


def as_tools(items: Sequence[ToolLike]) -> list[BaseTool]:
    """LangChain tools as given, plain functions converted (their docstring is the description the model
    reads); two tools with one name are refused, since the model could not tell them apart."""
    tools: list[BaseTool] = []
    for item in items:
        if isinstance(item, BaseTool):
            tools.append(item)
        elif callable(item):
            if not (getattr(item, "__doc__", None) or "").strip():
                name = getattr(item, "__name__", repr(item))
                raise ConfigError(f"Tool {name!r} has no docstring: the model reads it to know what it does.")
            tools.append(tool(item))
        else:
            raise ConfigError(f"{item!r} is not a tool: give a LangChain tool or a documented function.")
    names = [t.name for t in tools]
    if twice := sorted({n for n in names if names.count(n) > 1}):
        raise ConfigError(f"Two tools are called {twice[0]!r}: rename one (the model picks tools by name).")
    return tools


def _describe_error(error: Exception) -> str:
    """What the model reads when a tool fails: the reason, and what it can do about it."""
    if isinstance(error, ToolInvocationError):
        return f"Error: {error.message} Call it again with valid arguments, or answer without it."
    reason = str(error).splitlines()[0] if str(error) else ""
    return f"Error: {type(error).__name__}: {reason}"[:500] + " (the tool failed; do not retry it blindly)."


def _clipped(result: ToolMessage | Command[Any]) -> ToolMessage | Command[Any]:
    content = result.content if isinstance(result, ToolMessage) else None
    if isinstance(result, ToolMessage) and isinstance(content, str) and len(content) > MAX_TOOL_RESULT_CHARS:
        result.content = content[: MAX_TOOL_RESULT_CHARS - 1] + "…"
    return result


def make_tool_node(tools: Sequence[BaseTool], *, timeout_seconds: float) -> ToolNode:
    """LangGraph's ToolNode, with every failure a tool message the model reads (status "error"):
    an exception, invalid arguments, an unknown tool name, or a call still running after
    `timeout_seconds` (cancelled; a synchronous tool's thread cannot be stopped and finishes unseen).
    Interrupts (GraphBubbleUp) pass through, as ToolNode lets them."""

    async def bounded(
        request: ToolCallRequest,
        execute: Callable[[ToolCallRequest], Awaitable[ToolMessage | Command[Any]]],
    ) -> ToolMessage | Command[Any]:
        call = request.tool_call
        try:
            return _clipped(await asyncio.wait_for(execute(request), timeout_seconds))
        except TimeoutError:
            return ToolMessage(
                f"Error: {call['name']} took longer than {timeout_seconds:g} s and was stopped. "
                "Answer without it, or try a narrower request.",
                name=call["name"],
                tool_call_id=call["id"],
                status="error",
            )

    return ToolNode(list(tools), handle_tool_errors=_describe_error, awrap_tool_call=bounded)


def _turn(messages: Sequence[AnyMessage]) -> Sequence[AnyMessage]:
    """The messages after the newest human one: this turn's replies and tool traffic."""
    start = next((i for i in range(len(messages) - 1, -1, -1) if isinstance(messages[i], HumanMessage)), -1)
    return messages[start + 1 :]


def rounds_used(messages: Sequence[AnyMessage]) -> int:
    """Tool rounds of the current turn: its AI messages that called a tool (validly or not)."""
    return sum(
        1 for m in _turn(messages) if isinstance(m, AIMessage) and (m.tool_calls or m.invalid_tool_calls)
    )


def settle_reply(reply: AIMessage, *, may_call: bool) -> list[AnyMessage]:
    """What respond adds to the thread for one model reply; always a consistent thread.

    Calls the model may make keep an id (a tool result is paired to its call by it). Malformed calls
    (`invalid_tool_calls`: arguments that are not JSON) are answered at once with an error tool message,
    so the model can try again next round. When no call may be made (the rounds are used up, or the
    model was called without tools and still emitted one), the calls are dropped and the text stays;
    a reply left with no text says so rather than being empty.
    """
    if not (reply.tool_calls or reply.invalid_tool_calls):
        return [reply]
    if not may_call:
        kept = _with_calls(reply, set())
        return [kept if kept.text.strip() else kept.model_copy(update={"content": TOOLS_GAVE_UP})]
    calls = [{**c, "id": c.get("id") or f"call_{uuid.uuid4().hex}"} for c in reply.tool_calls]
    invalid = [{**c, "id": c.get("id") or f"call_{uuid.uuid4().hex}"} for c in reply.invalid_tool_calls]
    settled = reply.model_copy(update={"tool_calls": calls, "invalid_tool_calls": invalid})
    errors: list[AnyMessage] = [
        ToolMessage(
            f"Error: the call to {c.get('name') or 'a tool'} could not be read "
            f"({c.get('error') or 'its arguments are not valid JSON'}). Call it again with JSON arguments "
            "that match its schema.",
            name=c.get("name") or "unknown",
            tool_call_id=c["id"],
            status="error",
        )
        for c in invalid
    ]
    return [settled, *errors]


def route_after_respond(state: State) -> list[Send] | list[str]:
    """Each unanswered tool call to the `tools` node as its own task (a completed call keeps its saved
    result when a sibling fails, is interrupted or the process dies), back to respond when only malformed
    calls were answered, else on to the memory nodes."""
    messages = state["messages"]
    answered = {m.tool_call_id for m in messages if isinstance(m, ToolMessage)}
    reply = next((m for m in reversed(messages) if isinstance(m, AIMessage)), None)
    pending = [c for c in (reply.tool_calls if reply else []) if c["id"] not in answered]
    if pending:
        return [Send("tools", [{**call, "type": "tool_call"}]) for call in pending]
    if messages and isinstance(messages[-1], ToolMessage):
        return ["respond"]
    return list(MEMORY_NODES)


def _with_calls(message: AIMessage, ids: set[str]) -> AIMessage:
    """`message` keeping only the tool calls (valid or malformed) whose id is in `ids`; the provider's
    raw copy of the calls goes too, or a client would send them from there."""
    extra = {k: v for k, v in message.additional_kwargs.items() if k not in ("tool_calls", "function_call")}
    return message.model_copy(
        update={
            "tool_calls": [c for c in message.tool_calls if c["id"] in ids],
            "invalid_tool_calls": [c for c in message.invalid_tool_calls if c.get("id") in ids],
            "additional_kwargs": extra,
        }
    )


def prompt_safe(messages: Sequence[AnyMessage]) -> list[AnyMessage]:
    """`messages` with every tool call that has no result removed (a turn cut short and superseded by a
    newer message leaves one): chat APIs refuse a call without its result. The thread is not changed."""
    answered = {m.tool_call_id for m in messages if isinstance(m, ToolMessage)}
    safe: list[AnyMessage] = []
    for message in messages:
        if isinstance(message, AIMessage):
            ids = [c["id"] for c in message.tool_calls] + [c.get("id") for c in message.invalid_tool_calls]
            if any(i not in answered for i in ids):
                message = _with_calls(message, answered)
                if not (message.tool_calls or message.invalid_tool_calls or message.text.strip()):
                    continue
        safe.append(message)
    return safe
