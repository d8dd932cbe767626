"""messages_to_fold: which messages leave the working set, and the rules that keep every turn whole."""

from __future__ import annotations

from langchain_core.language_models import GenericFakeChatModel
from langchain_core.messages import AIMessage, AnyMessage, HumanMessage, SystemMessage, ToolMessage
from langgraph.runtime import Runtime

from nodes.prompts import SUMMARY_SYSTEM
from nodes.reduction import messages_to_fold
from nodes.state import Context
from nodes.summarize import make_summarize, summary_request
from nodes.tokens import count_tokens, text_of
from tests.unit.test_reduction_properties import check_fold

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
    check_fold(messages, budget, None, folded)


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
    check_fold(messages, 1, keep, folded)


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


def test_system_messages_that_stay_count_against_keep() -> None:
    # Without counting the system message, h2 and a2 would fit `keep` and stay.
    messages = [
        SystemMessage(LONG, id="s1"),
        human(LONG, "h1"),
        ai(LONG, "a1"),
        human("q", "h2"),
        ai("ok", "a2"),
    ]
    keep = count_tokens(messages[3:])
    folded = messages_to_fold(messages, budget_tokens=1, keep_tokens=keep)
    assert ids(folded) == ["h1", "a1"]
    check_fold(messages, 1, keep, folded)


def test_results_whose_call_already_left_fold_even_under_budget() -> None:
    messages = [
        SystemMessage("rules", id="s1"),
        tool("gone", "t0", "short"),
        human("hi", "h1"),
        ai("hello", "a1"),
    ]
    assert ids(messages_to_fold(messages, budget_tokens=10_000)) == ["t0"]


def test_results_answered_out_of_order_or_apart_stay_with_their_call() -> None:
    messages = [
        human(LONG, "h1"),
        ai_calling("a1", "c1", "c2"),
        tool("c2", "t2"),
        ai(LONG, "a-between"),
        tool("c1", "t1"),
        ai(LONG, "a2"),
        human("q", "h2"),
    ]
    keep = count_tokens(messages[3:])  # would cut between t2 and t1
    folded = messages_to_fold(messages, budget_tokens=1, keep_tokens=keep)
    assert ids(folded) == ["h1", "a1", "t2", "a-between", "t1"]
    check_fold(messages, 1, keep, folded)


def test_the_fold_stops_before_a_message_without_an_id() -> None:
    # It could not be removed afterwards, so it would be both summarized and still in the working set.
    messages = [human(LONG, "h1"), ai(LONG, "a1"), HumanMessage(LONG), ai(LONG, "a2"), human("q", "h3")]
    assert ids(messages_to_fold(messages, budget_tokens=1, keep_tokens=0)) == ["h1", "a1"]


def test_a_call_still_waiting_for_results_after_the_newest_human_stays() -> None:
    messages = [human(LONG, "h1"), ai(LONG, "a1"), human("look it up", "h2"), ai_calling("a2", "c1")]
    assert ids(messages_to_fold(messages, budget_tokens=1, keep_tokens=0)) == ["h1", "a1"]


# --- the running summary ---------------------------------------------------------------------------


def test_the_summary_request_carries_the_previous_summary_and_the_stale_messages() -> None:
    system, request = summary_request("Ada works at Acme.", [human("I moved to Oslo", "h1"), ai("ok", "a1")])
    assert system == SystemMessage(content=SUMMARY_SYSTEM)
    assert (
        text_of(request)
        == "Previous summary:\nAda works at Acme.\n\nNew messages:\nhuman: I moved to Oslo\nai: ok"
    )


async def test_ids_folded_but_not_yet_removed_are_not_folded_again() -> None:
    # The last turn's reduce_history never ran (the turn was superseded): h1 and a1 are already summarized.
    messages = [human(LONG, "h1"), ai(LONG, "a1"), human(LONG, "h2"), ai(LONG, "a2"), human("q", "h3")]
    model = GenericFakeChatModel(messages=iter(["newer summary"]))
    state = {"messages": messages, "summary": "old", "summarized_ids": ["h1", "a1"]}
    runtime = Runtime(context=Context(), store=None)
    update = await make_summarize(model, working_set_tokens=64)(state, runtime=runtime)  # type: ignore[arg-type]
    assert update == {"summary": "newer summary", "summarized_ids": ["h1", "a1", "h2", "a2"]}


def test_a_malformed_call_stays_with_its_error_result() -> None:
    from langchain_core.messages import AIMessage, HumanMessage, ToolMessage

    from nodes.reduction import allowed_cuts

    garbled = AIMessage(
        "",
        id="a1",
        invalid_tool_calls=[
            {"name": "x", "args": "{", "id": "bad1", "error": None, "type": "invalid_tool_call"}
        ],
    )
    messages = [HumanMessage("q", id="h1"), garbled, ToolMessage("Error", tool_call_id="bad1", id="t1"),
                AIMessage("ok", id="a2"), HumanMessage("next", id="h2")]  # fmt: skip
    assert 2 not in allowed_cuts(messages)  # between the malformed call and its error result
    assert {0, 1, 4} <= set(allowed_cuts(messages))
