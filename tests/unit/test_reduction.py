"""messages_to_fold: which messages leave the working set, and the rules that keep every turn whole."""

from __future__ import annotations

import itertools

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from langchain_core.messages import AIMessage, AnyMessage, HumanMessage, SystemMessage, ToolMessage

from nodes.reduction import messages_to_fold
from nodes.tokens import count_tokens

LONG = "word " * 80  # ~100 tokens per message


def human(text: str, id: str) -> HumanMessage:
    return HumanMessage(content=text, id=id)


def ai(text: str, id: str) -> AIMessage:
    return AIMessage(content=text, id=id)


def ai_calling(id: str, *call_ids: str) -> AIMessage:
    calls = [{"name": "lookup", "args": {"q": "x"}, "id": c, "type": "tool_call"} for c in call_ids]
    return AIMessage(content="", tool_calls=calls, id=id)


def tool(call_id: str, id: str, text: str = LONG) -> ToolMessage:
    return ToolMessage(content=text, tool_call_id=call_id, id=id)


def ids(messages: list[AnyMessage]) -> list[str | None]:
    return [m.id for m in messages]


def check_invariants(
    messages: list[AnyMessage], budget: int, keep: int | None, folded: list[AnyMessage]
) -> None:
    """Every rule the docstring and DESIGN.md §2 promise, checked on one input/output pair."""
    folded_ids = set(ids(folded))
    assert len(folded_ids) == len(folded), "a message folded twice"
    assert folded_ids <= set(ids(messages)), "folded a message that is not in the working set"

    if count_tokens(messages) <= budget:
        assert folded == []
        return

    # System messages never fold.
    assert not any(isinstance(m, SystemMessage) for m in folded)

    # Oldest first: the folded messages are exactly the non-system messages of some prefix.
    positions = [i for i, m in enumerate(messages) if m.id in folded_ids]
    cut = positions[-1] + 1 if positions else 0
    assert ids(folded) == [m.id for m in messages[:cut] if not isinstance(m, SystemMessage)]

    # Never the newest human message, nor anything after it.
    humans = [i for i, m in enumerate(messages) if isinstance(m, HumanMessage)]
    if humans:
        assert cut <= humans[-1]

    remaining = [m for m in messages if m.id not in folded_ids]
    conversation = [m for m in remaining if not isinstance(m, SystemMessage)]
    # The working set never starts with a tool result.
    assert not (remaining and isinstance(remaining[0], ToolMessage))
    assert not (conversation and isinstance(conversation[0], ToolMessage))

    # An AI tool call and its results fold together or stay together.
    for message in messages:
        if isinstance(message, AIMessage) and message.tool_calls:
            call_ids = {c["id"] for c in message.tool_calls}
            results = [m for m in messages if isinstance(m, ToolMessage) and m.tool_call_id in call_ids]
            sides = {m.id in folded_ids for m in [message, *results]}
            assert len(sides) == 1, f"tool call {message.id} split from its results"

    # Folding goes far enough: what stays fits `keep`, unless the cut reached the newest human message.
    keep_tokens = budget // 2 if keep is None else keep
    limit = humans[-1] if humans else len(messages)
    reached_limit = all(m.id in folded_ids for m in messages[:limit] if not isinstance(m, SystemMessage))
    assert reached_limit or count_tokens(conversation) <= keep_tokens


def test_under_budget_folds_nothing() -> None:
    messages = [human("hi", "h1"), ai("hello", "a1"), human("how are you", "h2")]
    assert messages_to_fold(messages, count_tokens(messages)) == []
    assert messages_to_fold(messages, 10_000) == []


def test_over_budget_folds_the_oldest_first() -> None:
    messages = [
        human(LONG, "h1"),
        ai(LONG, "a1"),
        human(LONG, "h2"),
        ai(LONG, "a2"),
        human(LONG, "h3"),
        ai(LONG, "a3"),
        human("and now?", "h4"),
    ]
    budget = count_tokens(messages) - 1
    folded = messages_to_fold(messages, budget)
    assert ids(folded) == ["h1", "a1", "h2", "a2"]  # what stays (h3, a3, h4) fits half the budget
    assert count_tokens(messages[4:]) <= budget // 2 < count_tokens(messages[3:])
    check_invariants(messages, budget, None, folded)


def test_explicit_keep_tokens_controls_how_much_stays() -> None:
    messages = [human(LONG, "h1"), ai(LONG, "a1"), human(LONG, "h2"), ai(LONG, "a2"), human("q", "h3")]
    folded = messages_to_fold(messages, budget_tokens=10, keep_tokens=count_tokens(messages[2:]))
    assert ids(folded) == ["h1", "a1"]


def test_never_folds_the_newest_human_message_even_when_it_alone_is_over_budget() -> None:
    messages = [human("hi", "h1"), ai("hello", "a1"), human(LONG * 5, "h2")]
    folded = messages_to_fold(messages, budget_tokens=20)
    assert ids(folded) == ["h1", "a1"]


def test_nothing_before_the_newest_human_means_nothing_folds() -> None:
    messages = [human(LONG * 5, "h1"), ai(LONG * 5, "a1")]
    assert messages_to_fold(messages, budget_tokens=5) == []


def test_messages_after_the_newest_human_are_never_folded() -> None:
    messages = [human(LONG, "h1"), ai(LONG, "a1"), human("q", "h2"), ai(LONG * 4, "a2")]
    folded = messages_to_fold(messages, budget_tokens=5)
    assert ids(folded) == ["h1", "a1"]


def test_tool_results_fold_with_the_call_that_made_them() -> None:
    # Keeping only what fits would cut between the tool results; the cut moves past them instead.
    messages = [
        human("look these up", "h1"),
        ai_calling("a1", "c1", "c2"),
        tool("c1", "t1"),
        tool("c2", "t2"),
        ai("found them", "a2"),
        human("thanks", "h2"),
    ]
    keep = count_tokens(messages[3:])  # would leave t2 first without the tool rule
    folded = messages_to_fold(messages, budget_tokens=1, keep_tokens=keep)
    assert ids(folded) == ["h1", "a1", "t1", "t2"]
    check_invariants(messages, 1, keep, folded)


def test_tool_call_stays_with_its_results_when_they_stay() -> None:
    messages = [
        human(LONG, "h1"),
        ai(LONG, "a0"),
        ai_calling("a1", "c1"),
        tool("c1", "t1", "short"),
        human("q", "h2"),
    ]
    folded = messages_to_fold(messages, budget_tokens=1, keep_tokens=count_tokens(messages[2:]))
    assert ids(folded) == ["h1", "a0"]


def test_system_messages_never_fold() -> None:
    messages = [
        SystemMessage(content=LONG, id="s1"),
        human(LONG, "h1"),
        SystemMessage(content=LONG, id="s2"),
        ai(LONG, "a1"),
        human("q", "h2"),
    ]
    folded = messages_to_fold(messages, budget_tokens=1, keep_tokens=0)
    assert ids(folded) == ["h1", "a1"]


def test_without_any_human_message_everything_but_system_may_fold() -> None:
    messages = [SystemMessage(content="rules", id="s1"), ai(LONG, "a1"), ai(LONG, "a2")]
    folded = messages_to_fold(messages, budget_tokens=1, keep_tokens=0)
    assert ids(folded) == ["a1", "a2"]


# --- property test -----------------------------------------------------------------------------------


@st.composite
def conversations(draw: st.DrawFn) -> list[AnyMessage]:
    """Random working sets built from whole units: a tool call is always followed by all its results."""
    counter = itertools.count()
    text = st.text(alphabet="abcdefgh ", min_size=0, max_size=300)
    kinds = st.sampled_from(["human", "ai", "tools", "system"])
    messages: list[AnyMessage] = []
    for kind in draw(st.lists(kinds, max_size=14)):
        n = next(counter)
        if kind == "human":
            messages.append(human(draw(text), f"h{n}"))
        elif kind == "ai":
            messages.append(ai(draw(text), f"a{n}"))
        elif kind == "system":
            messages.append(SystemMessage(content=draw(text), id=f"s{n}"))
        else:
            calls = [f"c{n}_{k}" for k in range(draw(st.integers(1, 3)))]
            messages.append(ai_calling(f"a{n}", *calls))
            messages.extend(tool(c, f"t{c}", draw(text)) for c in calls)
    return messages


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(data=st.data(), messages=conversations())
def test_fold_invariants_hold_for_random_conversations(
    data: st.DataObject, messages: list[AnyMessage]
) -> None:
    total = count_tokens(messages)
    budget = data.draw(st.integers(min_value=0, max_value=total + 20), label="budget")
    keep = data.draw(st.none() | st.integers(min_value=0, max_value=max(budget, 0)), label="keep")
    folded = messages_to_fold(messages, budget, keep)
    check_invariants(messages, budget, keep, folded)
