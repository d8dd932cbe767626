"""reduce_history with a fake Archive, run as a graph node (so it has its thread's config): the whole
working set is archived before anything is removed, and a failed archive removes nothing."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from langchain_core.messages import AIMessage, AnyMessage, HumanMessage
from langchain_core.runnables import RunnableConfig
from langgraph.checkpoint.memory import InMemorySaver
from langgraph.graph import END, START, StateGraph
from langgraph.graph.state import CompiledStateGraph

from nodes.reduce_history import Archive, make_reduce_history
from nodes.state import Context, State

CONFIG: RunnableConfig = {"configurable": {"thread_id": "t"}}
MESSAGES: list[AnyMessage] = [
    HumanMessage(content="one", id="h1"),
    AIMessage(content="two", id="a1"),
    HumanMessage(content="three", id="h2"),
    AIMessage(content="four", id="a2"),
]


class RecordingArchive:
    """Remembers each call with the working set as it was then; fails when told to."""

    def __init__(self, graph_ref: list[CompiledStateGraph[Any, Any, Any, Any]], fail: bool = False):
        self.calls: list[tuple[str, str, list[str], list[str]]] = []
        self.graph_ref = graph_ref
        self.fail = fail
        self.summaries: list[str] = []

    async def __call__(
        self, thread_id: str, user_id: str, messages: Sequence[AnyMessage], summary: str = ""
    ) -> None:
        self.summaries.append(summary)
        state = await self.graph_ref[0].aget_state(CONFIG)
        present = [m.id or "" for m in state.values["messages"]]
        self.calls.append((thread_id, user_id, [m.id or "" for m in messages], present))
        if self.fail:
            raise ConnectionError("database went away")


def graph_with(archive: Archive | None) -> CompiledStateGraph[Any, Any, Any, Any]:
    builder = StateGraph(State, context_schema=Context)
    builder.add_node("reduce_history", make_reduce_history(archive))
    builder.add_edge(START, "reduce_history")
    builder.add_edge("reduce_history", END)
    return builder.compile(checkpointer=InMemorySaver(), interrupt_before=["reduce_history"])


async def prepared(fail: bool = False, **values: Any) -> tuple[Any, RecordingArchive]:
    """A graph paused before reduce_history with MESSAGES in state, and its archive."""
    ref: list[CompiledStateGraph[Any, Any, Any, Any]] = []
    archive = RecordingArchive(ref, fail=fail)
    graph = graph_with(archive)
    ref.append(graph)
    await graph.ainvoke({"messages": MESSAGES, **values}, CONFIG, context=Context(user_id="u1"))
    return graph, archive


def ids(graph_state: Any) -> list[str]:
    return [m.id for m in graph_state.values["messages"]]


async def test_archives_the_whole_working_set_before_removing_folded_messages() -> None:
    graph, archive = await prepared(summarized_ids=["h1", "a1"])

    await graph.ainvoke(None, CONFIG, context=Context(user_id="u1"))

    all_ids = [m.id for m in MESSAGES]
    assert archive.calls == [("t", "u1", all_ids, all_ids)], "archived all four while all four were present"
    state = await graph.aget_state(CONFIG)
    assert ids(state) == ["h2", "a2"]
    assert state.values["summarized_ids"] == []


async def test_archives_even_when_nothing_folds() -> None:
    graph, archive = await prepared()

    await graph.ainvoke(None, CONFIG, context=Context(user_id="u1"))

    assert [call[2] for call in archive.calls] == [[m.id for m in MESSAGES]]
    assert ids(await graph.aget_state(CONFIG)) == [m.id for m in MESSAGES]


async def test_the_user_who_started_the_turn_owns_the_archive() -> None:
    graph, archive = await prepared(summarized_ids=["h1"], user_id="starter")

    await graph.ainvoke(None, CONFIG, context=Context(user_id="someone-else"))

    assert archive.calls[0][1] == "starter"


async def test_the_running_summary_goes_to_the_archive_to_title_the_thread() -> None:
    graph, archive = await prepared(summarized_ids=["h1"], summary="Trip to Lisbon. Flights booked.")

    await graph.ainvoke(None, CONFIG, context=Context(user_id="u1"))

    assert archive.summaries == ["Trip to Lisbon. Flights booked."]


async def test_a_failed_archive_removes_nothing_and_the_next_turn_catches_up() -> None:
    graph, archive = await prepared(fail=True, summarized_ids=["h1", "a1"])

    await graph.ainvoke(None, CONFIG, context=Context(user_id="u1"))  # the turn completes

    state = await graph.aget_state(CONFIG)
    assert ids(state) == [m.id for m in MESSAGES], "nothing left the working set unarchived"
    assert state.values["summarized_ids"] == ["h1", "a1"], "the fold waits for the next turn"
    assert state.next == ()

    archive.fail = False
    await graph.ainvoke({"messages": []}, CONFIG, context=Context(user_id="u1"))  # next turn
    await graph.ainvoke(None, CONFIG, context=Context(user_id="u1"))

    assert ids(await graph.aget_state(CONFIG)) == ["h2", "a2"]
    assert len(archive.calls) == 2


async def test_without_an_archive_folded_messages_are_only_removed() -> None:
    graph = graph_with(None)
    await graph.ainvoke({"messages": MESSAGES, "summarized_ids": ["h1", "a1"]}, CONFIG)

    await graph.ainvoke(None, CONFIG)

    assert ids(await graph.aget_state(CONFIG)) == ["h2", "a2"]


# --- compaction every `compact_every` turns -------------------------------------------------------------


class RecordingCompact:
    """Remembers the threads it compacted; fails when told to."""

    def __init__(self, fail: bool = False) -> None:
        self.threads: list[str] = []
        self.fail = fail

    async def __call__(self, thread_id: str) -> None:
        self.threads.append(thread_id)
        if self.fail:
            raise ConnectionError("database went away")


def compacting_graph(compact: RecordingCompact, every: int) -> CompiledStateGraph[Any, Any, Any, Any]:
    builder = StateGraph(State, context_schema=Context)
    builder.add_node("reduce_history", make_reduce_history(compact=compact, compact_every=every))
    builder.add_edge(START, "reduce_history")
    builder.add_edge("reduce_history", END)
    return builder.compile(checkpointer=InMemorySaver())


async def turns_of(graph: CompiledStateGraph[Any, Any, Any, Any], count: int) -> int:
    for n in range(count):
        await graph.ainvoke({"messages": [HumanMessage(f"turn {n}", id=f"h{n}")]}, CONFIG)
    return int((await graph.aget_state(CONFIG)).values["turns"])


async def test_every_nth_turn_of_a_thread_ends_by_compacting_it() -> None:
    compact = RecordingCompact()
    assert await turns_of(compacting_graph(compact, every=3), 7) == 7
    assert compact.threads == ["t", "t"]  # after turns 3 and 6


async def test_compact_every_zero_never_compacts() -> None:
    compact = RecordingCompact()
    assert await turns_of(compacting_graph(compact, every=0), 4) == 4
    assert compact.threads == []


async def test_a_failed_compaction_costs_only_the_saving() -> None:
    compact = RecordingCompact(fail=True)
    graph = compacting_graph(compact, every=1)
    assert await turns_of(graph, 2) == 2
    assert compact.threads == ["t", "t"]
    assert (await graph.aget_state(CONFIG)).next == ()
