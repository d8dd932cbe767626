"""Graph state and per-run context: small, JSON-friendly, shared by every node."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from datetime import datetime
from typing import Annotated, Any, NotRequired, Protocol, TypedDict

from langchain_core.messages import AnyMessage, HumanMessage
from langgraph.graph.message import add_messages
from langgraph.runtime import Runtime, ServerInfo

from nodes.config import DEFAULT_USER_ID

__all__ = [
    "Clock",
    "Context",
    "Node",
    "RunView",
    "State",
    "Update",
    "authenticated_user",
    "memory_user",
    "newest_human",
]


class State(TypedDict):
    """Checkpointed per thread; `messages` is only the working set, never the whole conversation.

    `user_id` and `review_memory` are the turn's context as load_memory saw it: a resumed or replayed
    node acts for the user who started the turn even when the resuming call sends no context.
    """

    messages: Annotated[list[AnyMessage], add_messages]
    summary: NotRequired[str]
    summarized_ids: NotRequired[list[str]]
    user_id: NotRequired[str]
    review_memory: NotRequired[bool]
    memory_context: NotRequired[str]
    memory_keys: NotRequired[list[str]]
    memory_trace: NotRequired[list[dict[str, Any]]]
    extraction: NotRequired[dict[str, Any]]
    turns: NotRequired[int]
    """Turns the thread has completed: the compaction cadence counts them."""


@dataclass(frozen=True)
class Context:
    """Per-run values (LangGraph `context_schema`): only what may differ between two runs of one process.

    Everything else that shapes a turn (instructions, budgets, cadences, model parameters) is fixed when
    the graph is built (nodes.config.GraphConfig). None means "as the thread had it": a run without a
    user acts for the user of the thread's latest run (the configured default on a new thread); a new
    message without `review_memory` is not reviewed, a resume or replay keeps the thread's setting.
    `assistant` names the assistant file whose instructions, model parameters, reply schema and budgets
    the run uses (the thread's own when unset); None after the graph resolved it: the process's settings.
    """

    user_id: str | None = None
    review_memory: bool | None = None
    assistant: str | None = None


Clock = Callable[[], datetime]
"""Now, as an aware datetime: injected into the nodes that stamp times (the composition root's clock)."""

Update = dict[str, Any]
"""What a node returns: the state keys it changes."""


class Node(Protocol):
    """What every node factory returns: an async function of (state, runtime)."""

    def __call__(self, state: State, *, runtime: Runtime[Context]) -> Awaitable[Update]: ...


def newest_human(messages: list[AnyMessage]) -> HumanMessage | None:
    """The user's latest message, which every node treats as the current turn."""
    return next((m for m in reversed(messages) if isinstance(m, HumanMessage)), None)


class RunView(Protocol):
    """What both a node's Runtime and a tool's ToolRuntime tell about the run."""

    @property
    def context(self) -> Context: ...

    @property
    def server_info(self) -> ServerInfo | None: ...


def authenticated_user(runtime: RunView) -> str | None:
    """The caller LangGraph Server authenticated by token (graphs/auth.py): whose memory every node uses,
    whatever the state or context says. None outside the server and for its trusted local user."""
    user = runtime.server_info.user if runtime.server_info is not None else None
    if user is None or not user.is_authenticated or not user.identity:
        return None
    return str(user.identity)


def memory_user(state: State, runtime: RunView) -> str:
    """Whose memory a node reads and writes: the authenticated caller, else the user who started the
    turn (kept in state so a resume without context stays theirs), else the run's context.

    load_memory writes `user_id` at the start of every turn, so the last fallback is for threads made
    before it did."""
    return authenticated_user(runtime) or state.get("user_id") or runtime.context.user_id or DEFAULT_USER_ID
