"""What a turn tells its caller: reply tokens as they stream, the tools called, then how the run ended."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

__all__ = [
    "CheckpointInfo",
    "PendingInterrupt",
    "ReplyDone",
    "ReplyToken",
    "ToolCall",
    "ToolResult",
    "TurnEnded",
    "TurnEvent",
]


@dataclass(frozen=True)
class ReplyToken:
    """A piece of the assistant's reply as it streams."""

    text: str


@dataclass(frozen=True)
class ToolCall:
    """The model asked for a tool (its call is saved; the result follows as ToolResult with the same id)."""

    id: str
    name: str
    args: dict[str, Any]


@dataclass(frozen=True)
class ToolResult:
    """What a tool returned to the model; `error` when it failed, timed out, or was unknown or misused."""

    id: str
    name: str
    content: str
    error: bool


@dataclass(frozen=True)
class ReplyDone:
    """The reply is complete and saved (respond's checkpoint); memory work goes on until TurnEnded.

    Only a run asked for it (`chat(..., reply_done=True)`) yields it, once.
    """


@dataclass(frozen=True)
class PendingInterrupt:
    """An `interrupt()` waiting for an answer (the memory review's proposal is its value)."""

    id: str
    value: Any


@dataclass(frozen=True)
class TurnEnded:
    """The run stopped: finished (`next_nodes` empty) or paused at an interrupt or breakpoint."""

    reply: str | None
    interrupts: tuple[PendingInterrupt, ...]
    next_nodes: tuple[str, ...]
    checkpoint_id: str | None


TurnEvent = ReplyToken | ToolCall | ToolResult | ReplyDone | TurnEnded


@dataclass(frozen=True)
class CheckpointInfo:
    """One checkpoint of a thread's history: what produced it and what runs next."""

    checkpoint_id: str
    step: int
    created_at: str | None
    source: str
    ran: tuple[str, ...]
    next_nodes: tuple[str, ...]
    messages: int
    parent_id: str | None = None
    """The checkpoint this one follows (None for the first; a compacted-away parent's id stays)."""
