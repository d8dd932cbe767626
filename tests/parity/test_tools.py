"""A tool call through every path: the model searches the user's other conversation; the call and its result
are shown, the reply follows, and the thread and its transcript hold the whole exchange."""

from __future__ import annotations

from langchain_core.messages import AIMessage, ToolMessage

from tests.parity.drivers import Driver
from tests.parity.probe import Probe

SEARCH = 'When does it leave? [call search_conversations {"query": "flight"}]'
SHOWN = '⚙ search_conversations(query="flight") → 2 passages'
"""The user's sentence and the fake model's echo of it both match: two passages, from the other thread."""


async def test_a_tool_call_is_shown_answered_and_archived_on_every_path(
    driver: Driver, probe: Probe, user: str
) -> None:
    earlier = await driver.new_thread()
    assert (await driver.send(earlier, "my flight leaves at half past six on tuesday", user)).ok
    thread = await driver.new_thread()
    outcome, lines = await driver.send_seeing_tools(thread, SEARCH, user)
    assert outcome.ok, outcome
    assert lines == [SHOWN]

    view = await probe.view(thread)
    assert view.types == ["human", "ai", "tool", "ai"], view.types
    assert view.texts("ai")[-1].startswith("Tool said: 2 passages")
    messages = (await probe.cm.state(thread)).values["messages"]
    [call] = messages[1].tool_calls
    assert isinstance(messages[1], AIMessage) and call["name"] == "search_conversations"
    assert isinstance(messages[2], ToolMessage) and messages[2].tool_call_id == call["id"]
    assert "half past six" in messages[2].text and view.next == ()

    entries = await probe.transcript(thread)
    assert [e.role for e in entries] == ["human", "ai", "tool", "ai"]
    assert {e.user_id for e in entries} == {user}
    assert entries[2].content == messages[2].text
