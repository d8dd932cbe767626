"""An instant, deterministic chat model, so the figures are the framework's and the database's."""

from __future__ import annotations

import random
import uuid
import zlib
from collections.abc import AsyncIterator, Iterator, Sequence
from typing import Any

from langchain_core.language_models import BaseChatModel, LanguageModelInput
from langchain_core.messages import AIMessage, AIMessageChunk, BaseMessage, SystemMessage
from langchain_core.messages.utils import count_tokens_approximately
from langchain_core.outputs import ChatGeneration, ChatGenerationChunk, ChatResult
from langchain_core.runnables import Runnable
from langchain_core.utils.function_calling import convert_to_openai_tool
from pydantic import Field

from bench.workload import REPLY_WORDS, entities_in
from nodes.prompts import SUMMARY_SYSTEM

__all__ = ["FakeChatModel"]

REPLY_LENGTH = 60
SUMMARY_LENGTH = 80
LANGMEM_SUMMARY_REQUESTS = (
    "Create a summary of the conversation above:",
    "This is summary of the conversation so far:",
)
"""The start of the last message of LangMem's default summary prompts (langmem.short_term); pinned by
tests/unit/test_upstream_pins.py::
test_langmem_summary_prompts_end_with_the_requests_the_bench_model_knows."""


def _words(seed_text: str, count: int) -> str:
    """`count` words picked deterministically from the text they answer."""
    rng = random.Random(zlib.crc32(seed_text.encode()))
    return " ".join(rng.choice(REPLY_WORDS) for _ in range(count)).capitalize() + "."


class FakeChatModel(BaseChatModel):
    """Answers at once: a ~60-word streamed reply, an ~80-word summary, or one tool call of 1-2 entities.

    The purpose is read from the request as the graph makes it: a first system message starting with
    SUMMARY_SYSTEM (convomem) or a last message that is one of LangMem's summary requests is a summary, a
    bound tool is an extraction (convomem's entity schema, or LangMem's manage-memory `content`), anything
    else is a reply. Every reply
    request's input tokens (langchain-core's approximate count) are recorded in `prompt_tokens`, in call
    order, for convomem and the baselines alike.

    Upstream detail: langchain-core's underscore hooks (`_llm_type`, `_generate`, `_agenerate`,
    `_astream`), the documented way to write a chat model; pinned by
    tests/unit/test_upstream_pins.py::test_chat_model_hooks_the_bench_model_overrides.
    """

    prompt_tokens: list[int] = Field(default_factory=list)

    @property
    def _llm_type(self) -> str:
        return "bench-fake"

    def bind_tools(
        self, tools: Sequence[Any], *, tool_choice: Any = None, **kwargs: Any
    ) -> Runnable[LanguageModelInput, AIMessage]:
        function = convert_to_openai_tool(tools[0])["function"]
        content = "content" in function.get("parameters", {}).get("properties", {})
        return self.bind(bench_tool=function["name"], bench_content=content, **kwargs)

    def _reply(self, messages: list[BaseMessage], bench_tool: str | None, bench_content: bool) -> AIMessage:
        last = str(messages[-1].content)
        first = messages[0]
        if bench_tool is not None:
            found = entities_in(last)
            args: dict[str, Any] = {"entities": [{"type": kind, "value": value} for kind, value in found]}
            if bench_content:
                args = {"content": "; ".join(f"{kind}: {value}" for kind, value in found) or last[:80]}
            call = {
                "name": bench_tool,
                "args": args,
                "id": f"call_{uuid.uuid4().hex[:8]}",
                "type": "tool_call",
            }
            return AIMessage(content="", tool_calls=[call])
        if (isinstance(first, SystemMessage) and str(first.content).startswith(SUMMARY_SYSTEM)) or any(
            request in last for request in LANGMEM_SUMMARY_REQUESTS
        ):
            return AIMessage(content=_words(last, SUMMARY_LENGTH))
        self.prompt_tokens.append(count_tokens_approximately(messages))
        return AIMessage(content=_words(last, REPLY_LENGTH))

    def _generate(
        self,
        messages: list[BaseMessage],
        stop: list[str] | None = None,
        run_manager: Any = None,
        bench_tool: str | None = None,
        bench_content: bool = False,
        **kwargs: Any,
    ) -> ChatResult:
        reply = self._reply(messages, bench_tool, bench_content)
        return ChatResult(generations=[ChatGeneration(message=reply)])

    async def _agenerate(
        self,
        messages: list[BaseMessage],
        stop: list[str] | None = None,
        run_manager: Any = None,
        bench_tool: str | None = None,
        bench_content: bool = False,
        **kwargs: Any,
    ) -> ChatResult:
        return self._generate(messages, stop, run_manager, bench_tool, bench_content, **kwargs)

    def _chunks(
        self, messages: list[BaseMessage], bench_tool: str | None, bench_content: bool
    ) -> Iterator[ChatGenerationChunk]:
        """One chunk per word, as a served model streams roughly a token at a time."""
        reply = self._reply(messages, bench_tool, bench_content)
        if reply.tool_calls:
            yield ChatGenerationChunk(message=AIMessageChunk(content="", tool_calls=reply.tool_calls))
            return
        words = str(reply.content).split(" ")
        for index, word in enumerate(words):
            yield ChatGenerationChunk(message=AIMessageChunk(content=word if index == 0 else f" {word}"))

    async def _astream(
        self,
        messages: list[BaseMessage],
        stop: list[str] | None = None,
        run_manager: Any = None,
        bench_tool: str | None = None,
        bench_content: bool = False,
        **kwargs: Any,
    ) -> AsyncIterator[ChatGenerationChunk]:
        for chunk in self._chunks(messages, bench_tool, bench_content):
            if run_manager is not None:
                await run_manager.on_llm_new_token(chunk.text, chunk=chunk)
            yield chunk
