"""LangChain fake chat models and store doubles: the seams unit tests hand to node factories and graphs."""

from __future__ import annotations

import json
import re
from collections.abc import Iterable, Iterator, Sequence
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
import openai
from langchain_core.language_models.fake_chat_models import GenericFakeChatModel
from langchain_core.messages import AIMessage, AIMessageChunk, BaseMessage, SystemMessage
from langchain_core.outputs import ChatGenerationChunk, ChatResult
from langchain_core.utils.function_calling import convert_to_openai_tool
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
    "calls",
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


def calls(*named: tuple[str, dict[str, Any]], text: str = "", prefix: str = "t") -> AIMessage:
    """A respond reply calling tools: (name, args) pairs, with ids `<prefix>1`, `<prefix>2`, ..."""
    return AIMessage(
        content=text,
        tool_calls=[
            {"name": name, "args": args, "id": f"{prefix}{n}", "type": "tool_call"}
            for n, (name, args) in enumerate(named, 1)
        ],
    )


def connection_error() -> openai.APIConnectionError:
    """A transient model error, as the openai client raises it when the server is unreachable."""
    return openai.APIConnectionError(request=httpx.Request("POST", "http://x"))


def ticking_clock(start: datetime = datetime(2026, 1, 1, tzinfo=UTC)) -> Clock:
    """A node's clock that moves a second per reading: a re-run that wrote again would show new times."""
    ticks = iter(range(1_000_000))
    return lambda: start + timedelta(seconds=next(ticks))


class RecordingChatModel(GenericFakeChatModel):
    """GenericFakeChatModel that keeps every prompt it receives; bind_tools records the names of the
    tools it was given (`bound`) and returns itself.

    Replies come from `messages` in order, unless a subclass's `next_reply` picks one (an exception
    it picks is raised, as a failing model would). A reply with tool calls streams as one chunk that
    carries them (GenericFakeChatModel's own streaming drops them).
    """

    messages: Iterator[AIMessage | str] = Field(default_factory=lambda: iter(()))
    prompts: list[list[BaseMessage]] = Field(default_factory=list)
    bound: list[list[str]] = Field(default_factory=list)
    refuse_tools: bool = False
    """bind_tools raises NotImplementedError for respond's tools (no forced choice), as a model without
    tool support does; extraction's forced call still binds."""

    choices: list[Any] = Field(default_factory=list)
    """The tool_choice each call was made with (None: the model decides, or no tools)."""

    def bind_tools(self, tools: Sequence[Any], *, tool_choice: Any = None, **kwargs: Any) -> Any:
        if self.refuse_tools and tool_choice is None:
            raise NotImplementedError("this model cannot call tools")
        self.bound.append([convert_to_openai_tool(t)["function"]["name"] for t in tools])
        return self.bind(tool_choice=tool_choice) if tool_choice is not None else self

    def _stream(
        self,
        messages: list[BaseMessage],
        stop: list[str] | None = None,
        run_manager: Any = None,
        **kwargs: Any,
    ) -> Iterator[ChatGenerationChunk]:
        result = self._generate(messages, stop=stop, **kwargs)
        message = result.generations[0].message
        assert isinstance(message, AIMessage)
        calls = [
            {"name": c["name"], "args": json.dumps(c["args"]), "id": c["id"], "index": i}
            for i, c in enumerate(message.tool_calls)
        ] + [
            {"name": c.get("name"), "args": c.get("args"), "id": c.get("id"), "index": 100 + i}
            for i, c in enumerate(message.invalid_tool_calls)
        ]
        tokens = re.split(r"(\s)", message.text) if message.text else [""]
        for index, token in enumerate(tokens):
            last = index == len(tokens) - 1
            chunk = ChatGenerationChunk(
                message=AIMessageChunk(
                    content=token,
                    id=message.id,
                    tool_call_chunks=calls if last else [],  # type: ignore[arg-type]
                    chunk_position="last" if last else None,
                )
            )
            if run_manager is not None:
                run_manager.on_llm_new_token(token, chunk=chunk)
            yield chunk

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
        self.choices.append(kwargs.pop("tool_choice", None))
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
