"""The embedded model's client against llama-cpp-python's ways, over real HTTP (tests/fake_openai.py in
llama_cpp_stream mode): a streamed tool call arrives whole, and an assistant turn that only called tools
is sent with string content, as that server's request schema demands."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from langchain_core.messages import AIMessage, AIMessageChunk, HumanMessage, ToolMessage
from langchain_core.tools import tool

from nodes.models import make_chat_model
from tests.fake_openai import FakeOpenAIServer


@tool
def search_conversations(query: str) -> str:
    """Search the user's earlier conversations."""
    return query


@pytest.fixture
def llama_like() -> Iterator[FakeOpenAIServer]:
    with FakeOpenAIServer(llama_cpp_stream=True) as server:
        yield server


@pytest.mark.parametrize("legacy", [True, False], ids=["local-client", "plain-client"])
async def test_a_streamed_tool_call_keeps_its_name(llama_like: FakeOpenAIServer, legacy: bool) -> None:
    model = make_chat_model(model="m", base_url=llama_like.base_url, api_key=None, legacy_max_tokens=legacy)
    text = '[call search_conversations {"query": "when does my flight leave"}]'
    merged: AIMessageChunk | None = None
    async for chunk in model.bind_tools([search_conversations]).astream([HumanMessage(text)]):
        assert isinstance(chunk, AIMessageChunk)
        merged = chunk if merged is None else merged + chunk
    assert merged is not None
    names = [call["name"] for call in merged.tool_calls]
    if legacy:
        assert names == ["search_conversations"]
        assert merged.tool_calls[0]["args"] == {"query": "when does my flight leave"}
    else:  # what the local model's client is there for: merged chunks repeat the name
        assert names != ["search_conversations"]


def test_an_assistant_turn_with_only_tool_calls_is_sent_with_string_content() -> None:
    model = make_chat_model(model="m", base_url="http://127.0.0.1:9/v1", api_key=None, legacy_max_tokens=True)
    call = {"name": "search_conversations", "args": {"query": "x"}, "id": "c1", "type": "tool_call"}
    history = [
        HumanMessage("hi"),
        AIMessage(content="", tool_calls=[call]),
        ToolMessage("y", tool_call_id="c1"),
    ]
    payload = model._get_request_payload(history)
    assistant = [m for m in payload["messages"] if m["role"] == "assistant"]
    assert assistant and assistant[0]["content"] == ""
