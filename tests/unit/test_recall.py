"""Recall across conversations in load_memory, with a fake PassageSearch: what is asked, what is kept
(deduplicated against the working set, the summary and each other), the budget share, and the trace."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

import pytest
from langchain_core.messages import AIMessage, AnyMessage, HumanMessage
from langgraph.runtime import ExecutionInfo, Runtime
from langgraph.store.memory import InMemoryStore
from pydantic import ValidationError

from graphs.settings import Settings, graph_config
from nodes.load_memory import make_load_memory
from nodes.profile import text_tokens
from nodes.recall import (
    PASSAGES_HEADER,
    RECALL_SHARE,
    SEARCH_WIDTH,
    TRACE_CHARS,
    Passage,
    search_words,
    select_passages,
)
from nodes.state import Context, State
from tests.unit.test_load_memory import record, remember, with_profile

AT = datetime(2026, 11, 3, 9, 30, tzinfo=UTC)
PLANTED = "my flight leaves at half past six on tuesday"


def passage(text: str, *, thread: str = "a", role: str = "human", score: float = 2.0) -> Passage:
    return Passage(
        thread_id=thread,
        message_id=f"{thread}-{abs(hash(text))}",
        role=role,
        text=text,
        created_at=AT,
        score=score,
        matched=["flight", "leave"],
    )


@dataclass
class FakeSearch:
    """A PassageSearch returning fixed passages, recording what load_memory asked."""

    found: list[Passage]
    calls: list[tuple[str, str | None, str, int]] = field(default_factory=list)
    fails: bool = False

    async def __call__(
        self, user_id: str, exclude_thread: str | None, text: str, limit: int
    ) -> list[Passage]:
        self.calls.append((user_id, exclude_thread, text, limit))
        if self.fails:
            raise ConnectionError("database gone")
        return self.found[:limit]


async def load(
    search: FakeSearch,
    text: str = "when does my flight leave?",
    *,
    wanted: int = 3,
    memory_tokens: int = 400,
    earlier: list[AnyMessage] | None = None,
    summary: str = "",
    store: InMemoryStore | None = None,
) -> dict[str, Any]:
    node = make_load_memory(memory_tokens=memory_tokens, passages=search, recall_passages=wanted)
    state: State = {"messages": [*(earlier or []), HumanMessage(text, id="now")]}
    if summary:
        state["summary"] = summary
    info = ExecutionInfo(checkpoint_id="c", checkpoint_ns="", task_id="t", thread_id="b")
    runtime = Runtime(context=Context(user_id="u1"), store=store or InMemoryStore(), execution_info=info)
    return await node(state, runtime=runtime)


def passages_of(update: dict[str, Any]) -> list[dict[str, Any]]:
    return [entry for entry in update["memory_trace"] if entry["key"] == "passage"]


async def test_the_search_is_asked_for_the_runs_user_minus_this_thread_and_the_passage_comes_in() -> None:
    search = FakeSearch([passage(PLANTED)])
    update = await load(search)
    assert search.calls == [("u1", "b", "when does my flight leave?", 3 * SEARCH_WIDTH)]
    assert update["memory_context"].startswith(PASSAGES_HEADER)
    assert f"(2026-11-03, the user said) {PLANTED}" in update["memory_context"]
    (trace,) = passages_of(update)
    assert trace["thread"] == "a" and trace["value"] == PLANTED and trace["role"] == "human"
    assert trace["matched"] == ["flight", "leave"] and trace["score"] == 2.0
    assert trace["at"] == AT.isoformat()
    assert "matched words: flight, leave" in trace["why"]


async def test_no_search_without_passages_wanted_or_words() -> None:
    search = FakeSearch([passage(PLANTED)])
    assert (await load(search, wanted=0))["memory_context"] == ""
    assert (await load(search, text="   "))["memory_context"] == ""
    assert search.calls == []


async def test_a_failing_search_costs_the_passages_not_the_turn() -> None:
    store = InMemoryStore()
    await remember(store, record("Acme"))
    update = await load(FakeSearch([], fails=True), "How is Acme?", store=store)
    assert "Acme" in update["memory_context"] and passages_of(update) == []


async def test_passages_already_in_the_working_set_or_summary_or_each_other_are_skipped() -> None:
    found = [
        passage("I said this here too"),
        passage("Folded  into\nthe SUMMARY"),
        passage(PLANTED, thread="c"),
        passage(PLANTED, thread="d"),
        passage("half past six", thread="e"),  # inside the passage kept before it
        passage("The gate is B12", thread="f", role="ai"),
    ]
    earlier: list[AnyMessage] = [
        HumanMessage("well, I said this here too!", id="h0"),
        AIMessage("ok", id="a0"),
    ]
    update = await load(FakeSearch(found), earlier=earlier, summary="They folded into the summary today.")
    assert [(p["thread"], p["value"]) for p in passages_of(update)] == [
        ("c", PLANTED),
        ("f", "The gate is B12"),
    ]
    assert "(2026-11-03, you said) The gate is B12" in update["memory_context"]


async def test_at_most_the_wanted_number_of_passages() -> None:
    found = [passage(f"flight number {n} leaves", thread=f"t{n}") for n in range(9)]
    update = await load(FakeSearch(found), wanted=2)
    assert [p["thread"] for p in passages_of(update)] == ["t0", "t1"]


async def test_passages_keep_to_their_share_and_the_whole_memory_to_its_budget() -> None:
    store = InMemoryStore()
    await with_profile(store)
    await remember(store, *[record(f"Flight {n:03d}", context="flight " * 30) for n in range(40)])
    found = [passage(f"flight {n} leave " + "words " * 200, thread=f"t{n}") for n in range(3)]
    for budget in (60, 150, 400, 1200):
        update = await load(FakeSearch(found), memory_tokens=budget, store=store)
        context = update["memory_context"]
        assert text_tokens(context) <= budget, (budget, text_tokens(context))
        recalled = context[context.index(PASSAGES_HEADER) :] if PASSAGES_HEADER in context else ""
        assert text_tokens(recalled) <= budget // RECALL_SHARE
        assert len(passages_of(update)) == recalled.count("\n- (")
    assert len(passages_of(update)) == 3, "a large budget keeps every passage, each cut short"
    assert "…" in update["memory_context"] and update["memory_keys"], "entities keep the rest"
    assert all(len(p["value"]) <= TRACE_CHARS for p in passages_of(update))


def test_select_passages_alone() -> None:
    kept_text, kept = select_passages([passage(PLANTED)], known=[], wanted=3, max_tokens=5)
    assert (kept_text, kept) == ("", []), "the header alone does not fit"
    kept_text, kept = select_passages([passage(PLANTED)], known=[""], wanted=3, max_tokens=100)
    assert kept_text.splitlines() == [PASSAGES_HEADER, f"- (2026-11-03, the user said) {PLANTED}"]
    assert select_passages([passage("  ")], known=[], wanted=3, max_tokens=100) == ("", [])


def test_search_words_are_plain_distinct_words() -> None:
    assert search_words("When does my flight leave? -or \"Flight\" e-mail_x 'x'") == [
        "when",
        "does",
        "my",
        "flight",
        "leave",
        "e",
        "mail",
        "x",
    ]
    assert search_words("?! -- ;") == []
    assert len(search_words(" ".join(f"w{n}" for n in range(100)))) == 32


def test_recall_passages_is_read_from_the_environment_with_its_range(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("CONVOMEM_RECALL_PASSAGES", raising=False)
    assert Settings().recall_passages == 3
    monkeypatch.setenv("CONVOMEM_RECALL_PASSAGES", "0")
    assert graph_config(Settings()).recall_passages == 0
    for bad in ("21", "-1", "some"):
        monkeypatch.setenv("CONVOMEM_RECALL_PASSAGES", bad)
        with pytest.raises(ValidationError, match="recall_passages"):
            Settings()
