"""respond ⇄ tools on the real graph (InMemorySaver): results, failures as tool messages, bounded rounds."""

from __future__ import annotations

import asyncio
from typing import Annotated, Any

import pytest
from langchain_core.messages import AIMessage, AnyMessage, HumanMessage, SystemMessage, ToolMessage
from langchain_core.tools import InjectedToolCallId, tool
from langgraph.types import Command, interrupt

from nodes.errors import ConfigError
from nodes.prompts import TOOLS_EXHAUSTED, TOOLS_GAVE_UP
from nodes.state import Context
from nodes.tokens import text_of
from nodes.tool_loop import as_tools, prompt_safe, rounds_used, settle_reply
from tests.support.fakes import ScriptedModel, calls, purpose_of
from tests.support.graphs import CONFIG, unit_graph

USER = Context(user_id="u1")


async def get_weather(city: str) -> str:
    """The weather in a city today."""
    return f"sunny in {city}"


async def broken(city: str) -> str:
    """Always fails."""
    raise RuntimeError(f"no station near {city}")


async def hangs(city: str) -> str:
    """Never answers."""
    await asyncio.Event().wait()
    return "never"


def consistent(messages: list[AnyMessage]) -> None:
    """Every tool call has exactly one result right after its AI message, and the turn ends on text."""
    for index, message in enumerate(messages):
        if isinstance(message, AIMessage) and message.tool_calls:
            ids = [c["id"] for c in message.tool_calls]
            following = messages[index + 1 : index + 1 + len(ids)]
            assert sorted(m.tool_call_id for m in following if isinstance(m, ToolMessage)) == sorted(ids)
    assert isinstance(messages[-1], AIMessage) and not messages[-1].tool_calls


async def turn(model: ScriptedModel, *tools: Any, text: str = "weather?", **config: Any) -> dict[str, Any]:
    graph, _ = unit_graph(model, tools=tools, **config)
    return await graph.ainvoke({"messages": [HumanMessage(text, id="h1")]}, CONFIG, context=USER)


async def test_a_tool_result_goes_back_to_the_model_and_the_reply_follows() -> None:
    model = ScriptedModel(scripts={"respond": [calls(("get_weather", {"city": "Oslo"})), "It is sunny."]})
    result = await turn(model, get_weather)
    messages = result["messages"]
    assert [type(m).__name__ for m in messages] == ["HumanMessage", "AIMessage", "ToolMessage", "AIMessage"]
    assert messages[2].content == "sunny in Oslo" and messages[2].status == "success"
    assert messages[3].content == "It is sunny."
    second = model.prompts_of("respond")[1]
    assert [type(m).__name__ for m in second[1:]] == ["HumanMessage", "AIMessage", "ToolMessage"]
    assert model.bound[0] == ["get_weather"]
    assert model.count("extract") == 1  # the memory nodes run once, after the loop
    consistent(messages)


@pytest.mark.parametrize(
    ("reply", "tools", "expected"),
    [
        (calls(("broken", {"city": "Oslo"})), [broken], "RuntimeError: no station near Oslo"),
        (calls(("get_weather", {"town": "Oslo"})), [get_weather], "city"),  # invalid arguments
        (calls(("launch_rocket", {})), [get_weather], "launch_rocket is not a valid tool"),
    ],
    ids=["raises", "invalid-arguments", "unknown-tool"],
)
async def test_tool_failures_reach_the_model_as_error_tool_messages(
    reply: AIMessage, tools: list[Any], expected: str
) -> None:
    model = ScriptedModel(scripts={"respond": [reply, "Sorry, no weather."]})
    messages = (await turn(model, *tools))["messages"]
    result = messages[2]
    assert isinstance(result, ToolMessage) and result.status == "error"
    assert expected in text_of(result)
    assert messages[-1].content == "Sorry, no weather."
    consistent(messages)


async def test_a_hanging_tool_is_stopped_by_its_timeout() -> None:
    model = ScriptedModel(scripts={"respond": [calls(("hangs", {"city": "Oslo"})), "Gave up."]})
    messages = (await turn(model, hangs, tool_timeout_seconds=0.05))["messages"]
    assert messages[2].status == "error" and "took longer than 0.05 s" in text_of(messages[2])
    assert messages[-1].content == "Gave up."


async def test_malformed_tool_calls_are_answered_and_the_model_tries_again() -> None:
    garbled = AIMessage(
        content="",
        invalid_tool_calls=[
            {
                "name": "get_weather",
                "args": "{city: Oslo",
                "id": None,
                "error": "bad JSON",
                "type": "invalid_tool_call",
            }
        ],
    )
    model = ScriptedModel(scripts={"respond": [garbled, calls(("get_weather", {"city": "Oslo"})), "Sunny."]})
    messages = (await turn(model, get_weather))["messages"]
    kinds = [type(m).__name__ for m in messages]
    assert kinds == ["HumanMessage", "AIMessage", "ToolMessage", "AIMessage", "ToolMessage", "AIMessage"]
    assert messages[2].status == "error"
    assert messages[2].tool_call_id == messages[1].invalid_tool_calls[0]["id"]
    assert messages[4].content == "sunny in Oslo" and messages[-1].content == "Sunny."


async def test_after_the_last_round_the_model_answers_without_tools() -> None:
    looping = [calls(("get_weather", {"city": "Oslo"}), prefix=f"r{n}-") for n in range(3)]
    still_calling = calls(("get_weather", {"city": "Oslo"}), prefix="x")
    model = ScriptedModel(scripts={"respond": [*looping, still_calling]})
    messages = (await turn(model, get_weather, tool_rounds=2))["messages"]
    assert rounds_used(messages) == 2
    last_prompt = model.prompts_of("respond")[-1]
    assert model.count("respond") == 3
    assert isinstance(last_prompt[0], SystemMessage) and TOOLS_EXHAUSTED in text_of(last_prompt[0])
    assert messages[-1].content == TOOLS_GAVE_UP and not messages[-1].tool_calls
    consistent(messages)


async def test_tool_choice_makes_the_first_round_call_that_tool_and_later_rounds_decide() -> None:
    model = ScriptedModel(scripts={"respond": [calls(("get_weather", {"city": "Oslo"})), "Sunny."]})
    messages = (await turn(model, get_weather, tool_choice="get_weather"))["messages"]
    assert [m.type for m in messages] == ["human", "ai", "tool", "ai"]
    respond_choices = [
        c for p, c in zip(model.prompts, model.choices, strict=True) if purpose_of(p) == "respond"
    ]
    assert respond_choices == ["get_weather", None]


def test_a_tool_choice_naming_no_tool_is_refused() -> None:
    with pytest.raises(ConfigError, match=r"tool_choice names 'get_wether'.*get_weather"):
        unit_graph(ScriptedModel(), tools=(get_weather,), tool_choice="get_wether")


async def test_a_model_that_cannot_bind_tools_still_answers() -> None:
    model = ScriptedModel(scripts={"respond": ["Plain answer."]}, refuse_tools=True)
    messages = (await turn(model, get_weather))["messages"]
    assert [m.content for m in messages] == ["weather?", "Plain answer."]


async def test_without_tools_the_graph_has_no_tool_node() -> None:
    graph, _ = unit_graph(ScriptedModel())
    assert "tools" not in graph.nodes
    with_tools, _ = unit_graph(ScriptedModel(), tools=[get_weather])
    assert "tools" in with_tools.nodes


async def test_a_completed_parallel_call_is_not_run_again_when_its_sibling_is_resumed() -> None:
    ran: list[str] = []

    @tool
    async def book(item: str, tool_call_id: Annotated[str, InjectedToolCallId]) -> str:
        """Book something; asks first for a car."""
        if item == "car":
            answer = interrupt({"type": "confirm_booking", "item": item})
            if answer != "yes":
                return "not booked"
        ran.append(f"{item}:{tool_call_id}")
        return f"booked {item}"

    model = ScriptedModel(
        scripts={"respond": [calls(("book", {"item": "hotel"}), ("book", {"item": "car"})), "All booked."]}
    )
    graph, _ = unit_graph(model, tools=[book])
    await graph.ainvoke({"messages": [HumanMessage("book", id="h1")]}, CONFIG, context=USER)
    assert ran == ["hotel:t1"]
    assert (await graph.aget_state(CONFIG)).interrupts
    result = await graph.ainvoke(Command(resume="yes"), CONFIG, context=USER)
    assert ran == ["hotel:t1", "car:t2"]  # the hotel's saved result was reused, not booked again
    consistent(result["messages"])


def test_a_call_left_without_result_is_not_sent_to_the_model() -> None:
    dangling = calls(("get_weather", {"city": "Oslo"}), text="Let me look.")
    bare = calls(("get_weather", {"city": "Rome"}), prefix="b")
    messages: list[AnyMessage] = [HumanMessage("a", id="1"), dangling, bare, HumanMessage("b", id="2")]
    safe = prompt_safe(messages)
    assert [type(m).__name__ for m in safe] == ["HumanMessage", "AIMessage", "HumanMessage"]
    assert safe[1].tool_calls == [] and safe[1].content == "Let me look."
    assert messages[1].tool_calls  # the thread itself is untouched


def test_calls_a_reply_may_not_make_are_dropped_and_its_text_kept() -> None:
    reply = calls(("x", {}), text="Here is what I know.")
    reply.additional_kwargs["tool_calls"] = [{"id": "t1"}]
    [settled] = settle_reply(reply, may_call=False)
    assert isinstance(settled, AIMessage) and not settled.tool_calls
    assert "tool_calls" not in settled.additional_kwargs and settled.content == "Here is what I know."


def test_functions_become_tools_and_bad_ones_are_refused() -> None:
    assert [t.name for t in as_tools([get_weather])] == ["get_weather"]

    def undocumented(x: int) -> int:
        return x

    with pytest.raises(ConfigError, match="no docstring"):
        as_tools([undocumented])
    with pytest.raises(ConfigError, match="Two tools are called 'get_weather'"):
        as_tools([get_weather, get_weather])
    with pytest.raises(ConfigError, match="is not a tool"):
        as_tools([42])  # type: ignore[list-item]


def test_a_turn_whose_tool_traffic_overflows_keeps_every_call_with_a_cut_result() -> None:
    from nodes.tokens import count_tokens, fit_window

    call = calls(("get_weather", {"city": "Oslo"}), ("get_weather", {"city": "Rome"}))
    results = [
        ToolMessage("x" * 4000, tool_call_id=c["id"], id=f"r{n}") for n, c in enumerate(call.tool_calls)
    ]
    messages: list[AnyMessage] = [HumanMessage("earlier", id="h0"), AIMessage("a", id="a0"),
                                  HumanMessage("weather?", id="h1"), call, *results]  # fmt: skip
    window = fit_window(messages, 300)
    assert [type(m).__name__ for m in window] == ["HumanMessage", "AIMessage", "ToolMessage", "ToolMessage"]
    assert window[0].content == "weather?" and all(len(text_of(m)) < 4000 for m in window[2:])
    assert count_tokens(window) <= 300 + 50
    assert messages[3] is call and len(text_of(results[0])) == 4000  # the thread is untouched
