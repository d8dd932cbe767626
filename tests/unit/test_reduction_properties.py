"""Property tests: random conversations with tool calls never lose a turn to summarize + reduce_history.

The oracle below states the rules by brute force over every possible cut, independently of
nodes.reduction, and a simulated thread runs the real summarize and reduce_history nodes turn after turn,
applying their updates with LangGraph's own `add_messages` reducer.
"""

from __future__ import annotations

import asyncio
import itertools
from collections.abc import Iterator
from typing import Any, cast

from hypothesis import given, settings
from hypothesis import strategies as st
from langchain_core.language_models import GenericFakeChatModel
from langchain_core.messages import AIMessage, AnyMessage, HumanMessage, SystemMessage, ToolMessage
from langgraph.graph.message import add_messages
from langgraph.runtime import Runtime

from nodes.reduce_history import make_reduce_history
from nodes.reduction import messages_to_fold
from nodes.state import Context, State
from nodes.summarize import make_summarize
from nodes.tokens import count_tokens

FAST = settings(max_examples=150, deadline=None, derandomize=True, database=None)

# --- the rules, by brute force ------------------------------------------------------------------------


def call_pairs(messages: list[AnyMessage]) -> list[tuple[int, int]]:
    """(index of an AI tool call, index of a tool result answering it) for every answered call."""
    return [
        (i, j)
        for i, ai in enumerate(messages)
        if isinstance(ai, AIMessage)
        for j, result in enumerate(messages)
        if isinstance(result, ToolMessage) and result.tool_call_id in {c["id"] for c in ai.tool_calls}
    ]


def newest_human_index(messages: list[AnyMessage]) -> int | None:
    return max((i for i, m in enumerate(messages) if isinstance(m, HumanMessage)), default=None)


def conversation(messages: list[AnyMessage]) -> list[AnyMessage]:
    return [m for m in messages if not isinstance(m, SystemMessage)]


def broken_rules(messages: list[AnyMessage], cut: int) -> list[str]:
    """Why folding the non-system messages of `messages[:cut]` would break a turn (empty: it would not)."""
    folded, staying = conversation(messages[:cut]), conversation(messages[cut:])
    broken = []
    newest = newest_human_index(messages)
    if newest is not None and cut > newest:
        broken.append("folds the newest human message")
    if any(min(i, j) < cut <= max(i, j) for i, j in call_pairs(messages)):
        broken.append("splits a tool call from its results")
    if staying and isinstance(staying[0], ToolMessage):
        broken.append("leaves the working set starting with a tool result")
    if any(not m.id for m in folded):
        broken.append("folds a message that has no id to remove it by")
    return broken


def cut_of(messages: list[AnyMessage], folded: list[AnyMessage]) -> int:
    """The prefix length whose non-system messages are exactly `folded` (asserts there is one)."""
    folded_ids = [m.id for m in folded]
    assert len(set(folded_ids)) == len(folded_ids), "a message folded twice"
    assert not any(isinstance(m, SystemMessage) for m in folded), "a system message folded"
    cut = max((i + 1 for i, m in enumerate(messages) if m.id in set(folded_ids)), default=0)
    assert [m.id for m in conversation(messages[:cut])] == folded_ids, "not the oldest messages in order"
    return cut


def staying_tokens(messages: list[AnyMessage], cut: int) -> int:
    systems: list[AnyMessage] = [m for m in messages[:cut] if isinstance(m, SystemMessage)]
    return count_tokens(systems + messages[cut:])


def check_fold(messages: list[AnyMessage], budget: int, keep: int | None, folded: list[AnyMessage]) -> None:
    """The fold breaks no rule, folds only when it must, and exactly as far as it must."""
    cut = cut_of(messages, folded)
    assert broken_rules(messages, cut) == [] or cut == 0, broken_rules(messages, cut)
    whole = [c for c in range(len(messages) + 1) if not broken_rules(messages, c)]
    if not whole:
        assert folded == []
        return
    folds = [conversation(messages[:c]) for c in whole]  # what each rule-respecting cut would fold
    if count_tokens(messages) <= budget:
        assert folded == folds[0], "folded under budget beyond repairing a leading tool result"
        return
    goal = budget // 2 if keep is None else keep
    fitting = [fold for c, fold in zip(whole, folds, strict=True) if staying_tokens(messages, c) <= goal]
    # As little as reaches the goal, or as much as the rules allow when nothing reaches it.
    assert folded == (fitting[0] if fitting else folds[-1])


def check_working_set(messages: list[AnyMessage]) -> None:
    """What a thread's state may look like between turns."""
    staying = conversation(messages)
    assert not (staying and isinstance(staying[0], ToolMessage)), "working set starts with a tool result"
    ids = [m.id for m in messages]
    assert len(set(ids)) == len(ids)
    for i, j in call_pairs(messages):
        assert i < j
    called = {c["id"] for m in messages if isinstance(m, AIMessage) for c in m.tool_calls}
    assert all(m.tool_call_id in called for m in messages if isinstance(m, ToolMessage)), "orphan result"


# --- random conversations -----------------------------------------------------------------------------


def text(draw: st.DrawFn) -> str:
    return "w " * draw(st.integers(min_value=0, max_value=300))


Numbers = Iterator[int]
"""Per-example id source: ids (and tool call ids, which count as tokens) replay identically."""


def maybe_id(draw: st.DrawFn, numbers: Numbers, prefix: str, with_ids: bool) -> str | None:
    return f"{prefix}{next(numbers)}" if with_ids or draw(st.booleans()) else None


@st.composite
def turn(draw: st.DrawFn, numbers: Numbers, with_ids: bool = True, finished: bool = True) -> list[AnyMessage]:
    """A human message, up to two rounds of tool calls (each answered in any order), then a reply."""
    messages: list[AnyMessage] = [HumanMessage(text(draw), id=maybe_id(draw, numbers, "h", with_ids))]
    for _ in range(draw(st.integers(0, 2))):
        calls = [f"c{next(numbers)}" for _ in range(draw(st.integers(1, 3)))]
        tool_calls = [{"name": "lookup", "args": {"q": c}, "id": c, "type": "tool_call"} for c in calls]
        messages.append(
            AIMessage(text(draw), tool_calls=tool_calls, id=maybe_id(draw, numbers, "a", with_ids))
        )
        if not finished and draw(st.booleans()):
            return messages  # the call is still running: no results, no reply yet
        for call in draw(st.permutations(calls)):
            messages.append(
                ToolMessage(text(draw), tool_call_id=call, id=maybe_id(draw, numbers, "t", with_ids))
            )
    if finished or draw(st.booleans()):
        messages.append(AIMessage(text(draw), id=maybe_id(draw, numbers, "a", with_ids)))
    return messages


def system(draw: st.DrawFn, numbers: Numbers) -> SystemMessage:
    return SystemMessage("rules " + text(draw), id=f"s{next(numbers)}")


@st.composite
def working_sets(draw: st.DrawFn) -> list[AnyMessage]:
    """System messages first, maybe results whose call already left, whole turns, maybe an open turn."""
    numbers = itertools.count()
    messages: list[AnyMessage] = [system(draw, numbers) for _ in range(draw(st.integers(0, 2)))]
    for _ in range(draw(st.integers(0, 2))):
        messages.append(ToolMessage(text(draw), tool_call_id=f"gone{next(numbers)}", id=f"o{next(numbers)}"))
    for _ in range(draw(st.integers(0, 5))):
        messages.extend(draw(turn(numbers)))
        if draw(st.integers(0, 9)) == 0:
            messages.append(system(draw, numbers))
    if draw(st.booleans()):
        messages.extend(draw(turn(numbers, finished=False)))
    return messages


@FAST
@given(data=st.data(), messages=working_sets())
def test_a_fold_never_breaks_a_turn(data: st.DataObject, messages: list[AnyMessage]) -> None:
    total = count_tokens(messages)
    budget = data.draw(st.integers(min_value=0, max_value=total + 50), label="budget")
    keep = data.draw(st.none() | st.integers(min_value=0, max_value=budget), label="keep")
    folded = messages_to_fold(messages, budget, keep)
    check_fold(messages, budget, keep, folded)
    # The named rules, spelled out once more on the result.
    folded_ids = {m.id for m in folded}
    staying = [m for m in messages if m.id not in folded_ids]
    assert all(m in staying for m in messages if isinstance(m, SystemMessage))
    newest = newest_human_index(messages)
    assert newest is None or messages[newest] in staying
    for i, j in call_pairs(messages):
        assert (messages[i].id in folded_ids) == (messages[j].id in folded_ids)


@FAST
@given(messages=working_sets(), budget=st.integers(min_value=0, max_value=400))
def test_messages_without_ids_never_fold(messages: list[AnyMessage], budget: int) -> None:
    """A message without an id could not be removed: it would sit in the summary and the working set."""
    stripped = [m.model_copy(update={"id": None}) if i % 3 == 1 else m for i, m in enumerate(messages)]
    folded = messages_to_fold(stripped, budget)
    assert all(m.id for m in folded)
    check_fold(stripped, budget, None, folded)


# --- whole thread: summarize, then reduce_history, turn after turn --------------------------------------


def summaries() -> Iterator[str]:
    return (f"summary {n}" for n in itertools.count())


def merge(messages: list[AnyMessage], update: list[Any]) -> list[AnyMessage]:
    """LangGraph's own reducer for `messages`: appends, replaces by id, removes on RemoveMessage."""
    return cast(list[AnyMessage], add_messages(cast(list[Any], messages), update))


def apply(node: Any, state: State, context: Context) -> State:
    """Run a node and merge its update as the graph would: `messages` through add_messages."""
    update: dict[str, Any] = asyncio.run(node(state, runtime=Runtime(context=context, store=None)))
    merged: dict[str, Any] = {**state, **update}
    merged["messages"] = merge(state["messages"], update.get("messages", []))
    return cast(State, merged)


@settings(max_examples=60, deadline=None, derandomize=True, database=None)
@given(
    data=st.data(),
    budget=st.integers(min_value=64, max_value=900),
    systems=st.integers(min_value=0, max_value=1),
    turns=st.integers(min_value=1, max_value=10),
)
def test_a_thread_keeps_every_message_exactly_once(
    data: st.DataObject, budget: int, systems: int, turns: int
) -> None:
    summarize = make_summarize(GenericFakeChatModel(messages=summaries()), working_set_tokens=budget)
    reduce_history = make_reduce_history()
    context = Context()
    state: State = {"messages": [SystemMessage("rules", id="s0")] if systems else []}
    in_summary: set[str | None] = set()  # every id ever folded into the running summary
    appended = {m.id for m in state["messages"]}
    numbers = itertools.count()
    for _ in range(turns):
        # A new turn arrives; add_messages gives id-less messages their ids, as it does in the graph.
        state = cast(State, {**state, "messages": merge(state["messages"], data.draw(turn(numbers, False)))})
        appended |= {m.id for m in state["messages"]}
        newest = state["messages"][newest_human_index(state["messages"]) or 0]
        pending = set(state.get("summarized_ids") or [])
        expected = messages_to_fold([m for m in state["messages"] if m.id not in pending], budget)

        state = apply(summarize, state, context)
        newly = set(state.get("summarized_ids") or []) - pending
        assert newly == {m.id for m in expected}
        assert not newly & in_summary, "a message folded into the summary twice"
        in_summary |= newly

        # The turn may be superseded before reduce_history runs; the next turn's reduce_history catches up.
        if data.draw(st.integers(0, 4), label="superseded") == 0:
            continue
        state = apply(reduce_history, state, context)

        messages = state["messages"]
        ids = {m.id for m in messages}
        assert not ids & in_summary, "a message both in the summary and in the working set"
        assert appended == ids | in_summary, "a message lost"
        assert newest in messages, "the newest human message was removed"
        assert systems == 0 or messages[0].id == "s0", "the system message was removed"
        check_working_set(messages)
        # Under budget whenever folding can get it there.
        if count_tokens(messages) > budget:
            assert all(
                broken_rules(messages, c) for c in range(len(messages) + 1) if conversation(messages[:c])
            )
