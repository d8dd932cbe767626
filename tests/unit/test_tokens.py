"""tokens: approximate counts, plain text of any message, and the prompt window respond sends."""

from __future__ import annotations

import itertools
import socket
import sys
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from langchain_core.messages import AIMessage, AnyMessage, HumanMessage, SystemMessage, ToolCall, ToolMessage
from langchain_core.messages.ai import UsageMetadata
from langchain_core.messages.utils import count_tokens_approximately

from nodes.tokens import count_tokens, fit_window, text_of

LONG = "word " * 80  # ~100 tokens


def test_count_tokens_grows_with_content_and_messages() -> None:
    one = [HumanMessage(content="hello there")]
    assert count_tokens([]) == 0
    assert 0 < count_tokens(one) < count_tokens([HumanMessage(content=LONG)])
    assert count_tokens(one * 2) == 2 * count_tokens(one)


def test_counting_and_fitting_download_no_tokenizer_and_open_no_connection(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    def refuse(*args: Any, **kwargs: Any) -> None:
        raise AssertionError("token counting touched the network")

    monkeypatch.setattr(socket.socket, "connect", refuse)
    monkeypatch.setattr(socket, "create_connection", refuse)
    monkeypatch.setattr(socket, "getaddrinfo", refuse)
    for tokenizer in ("tiktoken", "transformers", "tokenizers"):
        monkeypatch.setitem(sys.modules, tokenizer, None)  # any import of them now raises ImportError
    messages = [HumanMessage(LONG, id="h1"), AIMessage(LONG, id="a1"), HumanMessage("and now?", id="h2")]
    assert count_tokens(messages) == count_tokens_approximately(messages)
    assert [m.id for m in fit_window(messages, count_tokens(messages[1:]))] == ["h2"]


USAGE = UsageMetadata(input_tokens=900, output_tokens=100, total_tokens=1000)


def sized_message(kind: int, size: int) -> AnyMessage:
    """A message of `size` characters: human, AI with usage metadata, AI tool call, or tool result."""
    call = ToolCall(name="lookup", args={"q": "x"}, id="c1", type="tool_call")
    if kind == 0:
        return HumanMessage("x" * size)
    if kind == 1:
        return AIMessage("y" * size, usage_metadata=USAGE, response_metadata={"model_provider": "openai"})
    if kind == 2:
        return AIMessage("", tool_calls=[call])
    return ToolMessage("z" * size, tool_call_id="c1")


@settings(max_examples=100, deadline=None, derandomize=True, database=None)
@given(sizes=st.lists(st.integers(min_value=0, max_value=500), max_size=8), cut=st.integers(0, 8))
def test_count_tokens_adds_up_per_message(sizes: list[int], cut: int) -> None:
    """Reduction subtracts what folds from the total; that needs counts that add up, usage or not."""
    messages = [sized_message(i % 4, n) for i, n in enumerate(sizes)]
    assert count_tokens(messages) == count_tokens(messages[:cut]) + count_tokens(messages[cut:])
    assert count_tokens(messages) == sum(count_tokens([m]) for m in messages)


def test_text_of_flattens_content_blocks() -> None:
    assert text_of(HumanMessage(content="plain")) == "plain"
    blocks = HumanMessage(content=[{"type": "text", "text": "a"}, {"type": "text", "text": "b"}])
    assert text_of(blocks) == "ab"


def test_fit_window_keeps_everything_that_fits() -> None:
    messages = [HumanMessage("hi", id="h1"), AIMessage("hello", id="a1"), HumanMessage("again", id="h2")]
    assert [m.id for m in fit_window(messages, count_tokens(messages))] == ["h1", "a1", "h2"]


def test_fit_window_drops_oldest_and_starts_on_a_human_message() -> None:
    messages = [
        HumanMessage(LONG, id="h1"),
        AIMessage(LONG, id="a1"),
        HumanMessage(LONG, id="h2"),
        AIMessage(LONG, id="a2"),
        HumanMessage("and now?", id="h3"),
    ]
    # Room for a1 onwards, but a window may not start on an AI message.
    budget = count_tokens(messages[1:])
    window = fit_window(messages, budget)
    assert [m.id for m in window] == ["h2", "a2", "h3"]
    assert count_tokens(window) <= budget


def test_fit_window_never_starts_on_a_tool_result() -> None:
    call = {"name": "lookup", "args": {}, "id": "c1", "type": "tool_call"}
    messages = [
        HumanMessage("look it up", id="h1"),
        AIMessage("", tool_calls=[call], id="a1"),
        ToolMessage(LONG, tool_call_id="c1", id="t1"),
        AIMessage("found", id="a2"),
        HumanMessage("thanks", id="h2"),
    ]
    window = fit_window(messages, count_tokens(messages[2:]))
    assert [m.id for m in window] == ["h2"]


def test_fit_window_drops_leading_system_messages() -> None:
    messages = [SystemMessage("old instructions", id="s1"), HumanMessage("hi", id="h1")]
    assert [m.id for m in fit_window(messages, 1000)] == ["h1"]


def test_fit_window_cuts_the_newest_human_message_when_it_alone_is_over_budget() -> None:
    text = "start " + "x" * 2000 + " end"
    messages = [HumanMessage("older", id="h1"), AIMessage("reply", id="a1"), HumanMessage(text, id="h2")]
    window = fit_window(messages, 50)
    assert len(window) == 1
    assert isinstance(window[0], HumanMessage)
    assert window[0].id == "h2"
    assert count_tokens(window) <= 50
    assert text.endswith(text_of(window[0]))  # the end of what the user just said survives
    assert len(text_of(window[0])) > 100  # cut to fit, not emptied


def test_fit_window_without_human_messages_is_empty() -> None:
    assert fit_window([AIMessage(LONG * 3, id="a1")], 10) == []
    assert fit_window([], 10) == []


@pytest.mark.parametrize("budget", [0, 1, 4])
def test_fit_window_tiny_budget_returns_no_more_than_fits(budget: int) -> None:
    text = "x" * 400 + " please"
    window = fit_window([HumanMessage(text, id="h1")], budget)
    assert [m.id for m in window] == ["h1"]
    # A message costs at least 3 tokens of overhead plus its role, so the content must be empty or tiny.
    assert len(text_of(window[0])) <= max(budget * 4 - 16, 0)


@st.composite
def working_sets(draw: st.DrawFn) -> list[AnyMessage]:
    counter = itertools.count()
    text = st.text(alphabet="abc ", max_size=400)
    messages: list[AnyMessage] = []
    for kind in draw(st.lists(st.sampled_from(["human", "ai", "tools"]), max_size=10)):
        n = next(counter)
        if kind == "human":
            messages.append(HumanMessage(draw(text), id=f"h{n}"))
        elif kind == "ai":
            messages.append(AIMessage(draw(text), id=f"a{n}"))
        else:
            call = {"name": "lookup", "args": {}, "id": f"c{n}", "type": "tool_call"}
            messages.append(AIMessage("", tool_calls=[call], id=f"a{n}"))
            messages.append(ToolMessage(draw(text), tool_call_id=f"c{n}", id=f"t{n}"))
    messages.append(HumanMessage(draw(text), id="newest"))
    return messages


@settings(max_examples=200, deadline=None)
@given(messages=working_sets(), budget=st.integers(min_value=5, max_value=1500))
def test_fit_window_properties(messages: list[AnyMessage], budget: int) -> None:
    window = fit_window(messages, budget)
    assert count_tokens(window) <= budget
    assert isinstance(window[0], HumanMessage)
    assert window[-1].id == "newest"
    # A suffix of the conversation (except a cut newest message), so tool calls keep their results.
    if len(window) > 1:
        assert [m.id for m in window] == [m.id for m in messages[-len(window) :]]
