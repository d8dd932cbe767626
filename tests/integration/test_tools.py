"""Tools on real Postgres through the Python API: events, the transcript, the built-in memory tools scoped
to their user, the forget confirmation, folding across tool loops, and calls that never run twice."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator
from typing import Annotated, Any

import pytest
from langchain_core.messages import AIMessage, AnyMessage, ToolMessage
from langchain_core.tools import InjectedToolCallId, tool
from langgraph.types import interrupt

from graphs.api import (
    Convomem,
    InvalidInput,
    ReplyToken,
    ToolCall,
    ToolResult,
    TurnEnded,
    TurnEvent,
    open_convomem,
)
from graphs.settings import Settings
from nodes.memory_tools import FORGET_CONFIRMATION
from tests.fake_openai import FakeOpenAIServer
from tests.integration.support import finish


def call(tool_name: str, /, **args: Any) -> str:
    """The fake model's marker that makes its reply call `tool_name` with `args`."""
    return f"[call {tool_name} {json.dumps(args)}]"


async def get_weather(city: str) -> str:
    """The weather in a city today."""
    return f"sunny in {city}"


async def collect(events: AsyncIterator[TurnEvent]) -> list[TurnEvent]:
    return [event async for event in events]


def assert_consistent(messages: list[AnyMessage]) -> None:
    """Every tool call in the working set has its result, no result lacks its call, and the working set
    neither starts on a tool result nor ends on a call."""
    calls = {c["id"] for m in messages if isinstance(m, AIMessage) for c in m.tool_calls}
    results = {m.tool_call_id for m in messages if isinstance(m, ToolMessage)}
    assert calls == results
    assert not isinstance(messages[0], ToolMessage)
    assert isinstance(messages[-1], AIMessage) and not messages[-1].tool_calls


@pytest.fixture
async def tooled(settings: Settings) -> AsyncIterator[Convomem]:
    async with open_convomem(settings, tools=[get_weather]) as opened:
        yield opened


async def test_a_tool_call_streams_as_events_and_is_archived_whole(tooled: Convomem) -> None:
    events = await collect(tooled.chat("t", "weather? " + call("get_weather", city="Oslo"), user_id="u"))
    kinds = [type(e).__name__ for e in events if not isinstance(e, ReplyToken)]
    assert kinds == ["ToolCall", "ToolResult", "TurnEnded"]
    calls = [e for e in events if isinstance(e, ToolCall)]
    results = [e for e in events if isinstance(e, ToolResult)]
    assert (calls[0].name, calls[0].args) == ("get_weather", {"city": "Oslo"})
    assert (results[0].id, results[0].content, results[0].error) == (calls[0].id, "sunny in Oslo", False)
    reply = "".join(e.text for e in events if isinstance(e, ReplyToken))
    assert reply == "Tool said: sunny in Oslo"
    assert isinstance(events[-1], TurnEnded) and events[-1].reply == reply
    messages = (await tooled.state("t")).values["messages"]
    assert_consistent(messages)
    entries = await tooled.transcript("t")
    assert [e.role for e in entries] == ["human", "ai", "tool", "ai"]
    archived_call = entries[1].message
    assert isinstance(archived_call, AIMessage) and archived_call.tool_calls[0]["id"] == calls[0].id
    assert entries[2].content == "sunny in Oslo"


async def test_a_failing_or_unknown_tool_answers_with_an_error_and_the_turn_completes(
    tooled: Convomem,
) -> None:
    events = await collect(
        tooled.chat("t", call("launch_rocket") + call("get_weather", town="x"), user_id="u")
    )
    results = [e for e in events if isinstance(e, ToolResult)]
    assert [r.error for r in results] == [True, True]
    assert "launch_rocket is not a valid tool" in results[0].content and "city" in results[1].content
    final = events[-1]
    assert isinstance(final, TurnEnded) and final.reply and not final.next_nodes
    assert_consistent((await tooled.state("t")).values["messages"])


async def test_search_conversations_finds_the_users_own_other_conversations_only(app: Convomem) -> None:
    await app.send("trip", "my flight leaves at half past six on tuesday", user_id="ann")
    await app.send("other", "my flight leaves at noon on friday", user_id="bob")
    events = await collect(app.chat("later", call("search_conversations", query="flight"), user_id="ann"))
    [found] = [e for e in events if isinstance(e, ToolResult)]
    assert found.content.startswith("2 passages") and "half past six" in found.content
    assert "noon" not in found.content  # bob's conversation is never searched for ann
    events = await collect(
        app.chat("later2", call("search_conversations", query="when flight"), user_id="bob")
    )
    [found] = [e for e in events if isinstance(e, ToolResult)]
    assert "noon" in found.content and "half past six" not in found.content  # any word, when all fail


async def test_recall_entity_says_where_it_was_mentioned(app: Convomem) -> None:
    await app.send("job", "I work at Acme these days.", user_id="ann")
    events = await collect(app.chat("ask", call("recall_entity", name="Acme"), user_id="ann"))
    [found] = [e for e in events if isinstance(e, ToolResult)]
    assert found.content.startswith("Acme (ORG)") and "(job)" in found.content
    events = await collect(app.chat("ask2", call("recall_entity", name="Acme"), user_id="bob"))
    assert [e.content for e in events if isinstance(e, ToolResult)] == ["Nothing remembered as 'Acme'."]


async def test_remember_writes_once_per_call_even_when_replayed(app: Convomem) -> None:
    await app.send("t", call("remember", fact="prefers window seats", topic="seat"), user_id="ann")
    profile = await app.profile("ann")
    assert profile is not None and profile.current_facts() == {"seat": "prefers window seats"}
    written = profile.updated_at
    before_tools = next(c for c in await app.history("t") if c.next_nodes == ("tools",))
    events = await collect(app.replay("t", before_tools.checkpoint_id))
    assert [e.content for e in events if isinstance(e, ToolResult)] == [
        "Already saved: seat = prefers window seats"
    ]
    again = await app.profile("ann")
    assert again is not None and again.updated_at == written and len(again.facts["seat"]) == 1


async def test_forget_asks_first_and_takes_only_yes_or_no(app: Convomem) -> None:
    await app.send("t", call("remember", fact="prefers window seats", topic="seat"), user_id="ann")
    ended = await app.send("t", call("forget", what="seat"), user_id="ann")
    [question] = ended.interrupts
    assert question.value["type"] == FORGET_CONFIRMATION and question.value["items"]
    with pytest.raises(InvalidInput, match="answer yes or no"):
        await finish(app.resume("t", "maybe"))
    with pytest.raises(InvalidInput, match="yes or no"):
        await finish(app.resume("t"))
    profile = await app.profile("ann")
    assert profile is not None and "seat" in profile.current_facts()  # nothing deleted yet
    ended = await finish(app.resume("t", "yes"))
    assert not ended.interrupts and ended.reply and ended.reply.startswith("Tool said: Forgotten")
    profile = await app.profile("ann")
    assert profile is not None and "seat" not in profile.facts
    assert_consistent((await app.state("t")).values["messages"])


async def test_history_folds_across_tool_loops_without_splitting_a_call(
    settings: Settings, fake_model: FakeOpenAIServer
) -> None:
    small = settings.model_copy(update={"working_set_tokens": 64})
    async with open_convomem(small, tools=[get_weather]) as app:
        sent = 0
        for turn in range(6):
            text = (
                f"turn {turn} " + call("get_weather", city=f"City{turn}") + call("get_weather", city="Rome")
            )
            await app.send("t", text, user_id="u")
            sent += 1
            values = (await app.state("t")).values
            assert_consistent(values["messages"])
        assert values.get("summary")
        entries = await app.transcript("t")
        roles = [e.role for e in entries]
        assert roles == ["human", "ai", "tool", "tool", "ai"] * sent  # everything kept, in order
        assert len(values["messages"]) < len(entries)  # and the working set did fold
        summarize = fake_model.requests_of("summarize")
        assert summarize, "summarize folded at least once"


async def test_a_finished_parallel_call_is_not_run_again_on_resume(settings: Settings) -> None:
    ran: list[str] = []

    @tool
    async def book(item: str, tool_call_id: Annotated[str, InjectedToolCallId]) -> str:
        """Book something; a car needs the user's go-ahead."""
        if item == "car" and interrupt({"type": "go_ahead", "item": item}) != "yes":
            return "not booked"
        ran.append(f"{item}:{tool_call_id}")
        return f"booked {item}"

    async with open_convomem(settings, tools=[book]) as app:
        ended = await app.send("t", call("book", item="hotel") + call("book", item="car"), user_id="u")
        assert ended.interrupts and len(ran) == 1 and ran[0].startswith("hotel:")
        ended = await finish(app.resume("t", "yes"))
        assert [r.split(":")[0] for r in ran] == ["hotel", "car"]  # the hotel was booked once
        assert_consistent((await app.state("t")).values["messages"])


async def test_malformed_arguments_over_http_come_back_as_an_error_and_the_turn_ends(
    tooled: Convomem,
) -> None:
    events = await collect(tooled.chat("t", "[call get_weather {city: Oslo}]", user_id="u"))
    [result] = [e for e in events if isinstance(e, ToolResult)]
    assert result.error and "could not be read" in result.content
    final = events[-1]
    assert isinstance(final, TurnEnded) and final.reply and final.reply.startswith("Tool said: Error")
    messages = (await tooled.state("t")).values["messages"]
    assert (
        messages[1].invalid_tool_calls and messages[2].tool_call_id == messages[1].invalid_tool_calls[0]["id"]
    )


async def test_a_hanging_tool_times_out_over_http(settings: Settings) -> None:
    async def slow_lookup(city: str) -> str:
        """Looks something up on a service that never answers."""
        await asyncio.Event().wait()
        return city

    quick = settings.model_copy(update={"tool_timeout_seconds": 0.2})
    async with open_convomem(quick, tools=[slow_lookup]) as app:
        events = await collect(app.chat("t", call("slow_lookup", city="Oslo"), user_id="u"))
    [result] = [e for e in events if isinstance(e, ToolResult)]
    assert result.error and "took longer than 0.2 s" in result.content
    assert isinstance(events[-1], TurnEnded) and not events[-1].next_nodes
