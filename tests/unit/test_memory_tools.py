"""Built-in tools: their selection (CONVOMEM_TOOLS), forget's yes/no answers, and the CLI's tool line."""

from __future__ import annotations

from collections.abc import AsyncIterator
from types import SimpleNamespace

import pytest

from graphs.cli_render import console, stream_events, tool_line
from graphs.composition import builtin_tools
from graphs.events import ReplyToken, ToolCall, ToolResult, TurnEnded, TurnEvent
from graphs.settings import Settings
from nodes.errors import ConfigError, InvalidInput
from nodes.memory_tools import (
    BUILTIN_TOOLS,
    FORGET_CONFIRMATION,
    check_forget_answer,
    forget_decision,
    select_builtin_tools,
)


async def no_search(query: str, *, user_id: str, thread_id: str | None, limit: int) -> list[object]:
    return []


@pytest.mark.parametrize(
    ("selection", "local", "expected"),
    [
        ("auto", False, BUILTIN_TOOLS),
        ("auto", True, ()),  # the embedded model cannot call tools reliably
        ("all", True, BUILTIN_TOOLS),
        ("none", False, ()),
        ("remember, forget", False, ("remember", "forget")),
    ],
)
def test_convomem_tools_selects_the_builtin_tools(
    selection: str, local: bool, expected: tuple[str, ...]
) -> None:
    settings = Settings(tools=selection)
    assert tuple(t.name for t in builtin_tools(settings, no_search, local=local)) == expected  # type: ignore[union-attr]


def test_an_unknown_builtin_tool_is_refused_by_name() -> None:
    with pytest.raises(ConfigError, match="Unknown built-in tool 'recall' in CONVOMEM_TOOLS"):
        select_builtin_tools("remember,recall")


@pytest.mark.parametrize(("answer", "forget"), [("yes", True), (" Y ", True), ("no", False), (False, False)])
def test_forget_takes_yes_or_no(answer: object, forget: bool) -> None:
    assert forget_decision(answer) is forget


@pytest.mark.parametrize("answer", ["maybe", None, 1, ["yes"]])
def test_any_other_forget_answer_is_refused_before_resuming(answer: object) -> None:
    pending = [SimpleNamespace(value={"type": FORGET_CONFIRMATION, "what": "seat"})]
    with pytest.raises(InvalidInput, match="whether to forget 'seat': answer yes or no"):
        check_forget_answer(pending, answer)
    check_forget_answer([SimpleNamespace(value={"type": "memory_review"})], answer)  # not its question


def test_the_tool_line_shows_call_and_first_line_of_the_result() -> None:
    call = ToolCall("c1", "search_conversations", {"query": "flight"})
    line = tool_line(call, ToolResult("c1", "search_conversations", "2 passages\n- [..] flight", False))
    assert line.plain == '⚙ search_conversations(query="flight") → 2 passages' and line.style == "dim"
    failed = tool_line(call, ToolResult("c1", "search_conversations", "Error: boom [/b]", True))
    assert failed.plain.endswith("→ error: Error: boom [/b]") and failed.style == "dim red"


async def test_the_cli_prints_each_tool_line_between_reply_text() -> None:
    async def events() -> AsyncIterator[TurnEvent]:
        yield ToolCall("c1", "get_weather", {"city": "Oslo"})
        yield ToolResult("c1", "get_weather", "sunny", False)
        yield ReplyToken("It is sunny.")
        yield TurnEnded(reply="It is sunny.", interrupts=(), next_nodes=(), checkpoint_id=None)

    with console.capture() as captured:
        final = await stream_events(events())
    assert final.reply == "It is sunny."
    assert captured.get().splitlines() == ['⚙ get_weather(city="Oslo") → sunny', "assistant> It is sunny."]


async def test_a_tool_acts_for_the_authenticated_caller_whatever_the_state_says() -> None:
    from langgraph.prebuilt import ToolRuntime
    from langgraph.runtime import ServerInfo
    from langgraph.store.memory import InMemoryStore

    from nodes.memory_tools import recall_entity
    from nodes.namespaces import entity_namespace
    from nodes.state import Context

    store = InMemoryStore()
    record = {"type": "ORG", "value": "Acme", "mentions": 1, "threads": ["t1"], "first_seen": "2026-01-01",
              "last_seen": "2026-01-02", "confidence": 0.9}  # fmt: skip
    await store.aput(entity_namespace("alice"), "org:acme", record)
    caller = SimpleNamespace(is_authenticated=True, identity="alice")
    runtime = ToolRuntime(
        state={"user_id": "mallory"},
        context=Context(user_id="mallory"),
        config={},
        stream_writer=lambda chunk: None,
        tool_call_id="c1",
        store=store,
        server_info=ServerInfo(assistant_id="a", graph_id="convomem", user=caller),  # type: ignore[arg-type]
    )
    assert recall_entity.coroutine is not None
    found = await recall_entity.coroutine("Acme", runtime)
    assert found.startswith("Acme (ORG)")
    unauthenticated = ToolRuntime(**{**runtime.__dict__, "server_info": None})
    assert await recall_entity.coroutine("Acme", unauthenticated) == "Nothing remembered as 'Acme'."
