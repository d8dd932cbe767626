"""LangChain fake chat models and store doubles: the seams unit tests hand to node factories and graphs."""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Sequence
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
import openai
from langchain_core.language_models.fake_chat_models import GenericFakeChatModel
from langchain_core.messages import AIMessage, BaseMessage, SystemMessage
from langchain_core.outputs import ChatResult
from langgraph.store.base import Op, Result
from langgraph.store.memory import InMemoryStore
from pydantic import Field

from nodes.prompts import EXTRACTION_SYSTEM, SUMMARY_SYSTEM
from nodes.state import Clock
from nodes.tokens import text_of

__all__ = [
    "ACME",
    "BOB",
    "DEFAULT_REPLIES",
    "CountingStore",
    "RecordingChatModel",
    "ScriptedModel",
    "connection_error",
    "extraction",
    "fake",
    "purpose_of",
    "ticking_clock",
    "tool_call",
]


ACME = {"type": "ORG", "value": "Acme Corp.", "context": "works at Acme Corp.", "confidence": 0.9}
BOB = {"type": "PERSON", "value": "Bob", "context": "colleague", "confidence": 0.8}
"""Two entities as an extraction proposes them."""


def tool_call(args: Any) -> AIMessage:
    """An extraction reply: the forced `Extraction` tool call with these arguments."""
    return AIMessage(
        content="", tool_calls=[{"name": "Extraction", "args": args, "id": "c1", "type": "tool_call"}]
    )


def extraction(*entities: dict[str, Any], args: Any = None) -> AIMessage:
    """An extraction reply proposing `entities` (or carrying `args` as they are)."""
    return tool_call({"entities": list(entities)} if args is None else args)


def connection_error() -> openai.APIConnectionError:
    """A transient model error, as the openai client raises it when the server is unreachable."""
    return openai.APIConnectionError(request=httpx.Request("POST", "http://x"))


def ticking_clock(start: datetime = datetime(2026, 1, 1, tzinfo=UTC)) -> Clock:
    """A node's clock that moves a second per reading: a re-run that wrote again would show new times."""
    ticks = iter(range(1_000_000))
    return lambda: start + timedelta(seconds=next(ticks))


class RecordingChatModel(GenericFakeChatModel):
    """GenericFakeChatModel that keeps every prompt it receives; bind_tools returns itself.

    Replies come from `messages` in order, unless a subclass's `next_reply` picks one (an exception
    it picks is raised, as a failing model would).
    """

    messages: Iterator[AIMessage | str] = Field(default_factory=lambda: iter(()))
    prompts: list[list[BaseMessage]] = Field(default_factory=list)

    def bind_tools(self, tools: Sequence[Any], *, tool_choice: Any = None, **kwargs: Any) -> Any:
        return self

    def next_reply(self, messages: list[BaseMessage]) -> AIMessage | str | BaseException | None:
        """The reply to this prompt; None takes the next of `messages`."""
        return None

    def _generate(
        self,
        messages: list[BaseMessage],
        stop: list[str] | None = None,
        run_manager: Any = None,
        **kwargs: Any,
    ) -> ChatResult:
        self.prompts.append(list(messages))
        reply = self.next_reply(messages)
        if isinstance(reply, BaseException):
            raise reply
        if reply is not None:
            self.messages = iter([reply.model_copy(deep=True) if isinstance(reply, AIMessage) else reply])
        return super()._generate(messages, stop=stop, run_manager=run_manager, **kwargs)

    async def _agenerate(
        self,
        messages: list[BaseMessage],
        stop: list[str] | None = None,
        run_manager: Any = None,
        **kwargs: Any,
    ) -> ChatResult:
        # On the event loop, not in an executor: parallel nodes never interleave inside _generate.
        return self._generate(messages, stop=stop, **kwargs)


def fake(*replies: AIMessage | str) -> RecordingChatModel:
    """A model answering `replies` in order (StopIteration once they run out)."""
    return RecordingChatModel(messages=iter(replies))


def purpose_of(messages: Sequence[BaseMessage]) -> str:
    """Which node is calling, recognised by the prompt constants (no prose matching)."""
    first = messages[0] if messages else None
    if isinstance(first, SystemMessage) and text_of(first).startswith(EXTRACTION_SYSTEM):
        return "extract"
    if isinstance(first, SystemMessage) and first.content == SUMMARY_SYSTEM:
        return "summarize"
    return "respond"


DEFAULT_REPLIES: dict[str, Any] = {
    "respond": "Noted.",
    "summarize": "SUMMARY-1",
    "extract": extraction(),
}


class ScriptedModel(RecordingChatModel):
    """One script per calling node (purpose_of); a node without a script gets DEFAULT_REPLIES.

    Extraction and summarize run in parallel on one model, so replies are picked by purpose, not by order.
    """

    scripts: dict[str, list[Any]] = Field(default_factory=dict)

    def next_reply(self, messages: list[BaseMessage]) -> AIMessage | str | BaseException | None:
        script = self.scripts.get(purpose_of(messages)) or []
        return script.pop(0) if script else DEFAULT_REPLIES[purpose_of(messages)]

    def prompts_of(self, purpose: str) -> list[list[BaseMessage]]:
        """The prompts one kind of node sent, oldest first."""
        return [prompt for prompt in self.prompts if purpose_of(prompt) == purpose]

    def count(self, purpose: str | None = None) -> int:
        return len(self.prompts) if purpose is None else len(self.prompts_of(purpose))


class CountingStore(InMemoryStore):
    """InMemoryStore that records every operation and round trip (all async methods go through abatch)."""

    def __init__(self, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.batches: list[list[Op]] = []

    async def abatch(self, ops: Iterable[Op]) -> list[Result]:
        listed = list(ops)
        self.batches.append(listed)
        return await super().abatch(listed)

    def reset(self) -> None:
        self.batches = []

    def ops(self, kind: type[Any] = object) -> list[Any]:
        """Every operation asked for since the last reset, of one kind (all by default)."""
        return [op for batch in self.batches for op in batch if isinstance(op, kind)]
