"""The real conversation graph, compiled with InMemorySaver + InMemoryStore, driven by a fake model."""

from __future__ import annotations

from typing import Any

import openai
import pytest
from langchain_core.messages import AIMessage, AnyMessage, HumanMessage, SystemMessage
from langchain_core.runnables import RunnableConfig
from langgraph.graph.state import CompiledStateGraph
from langgraph.store.memory import InMemoryStore
from langgraph.types import Command, StateSnapshot

from graphs.conversation import NODES
from nodes.memory import EntityRecord
from nodes.namespaces import entity_namespace, extracted_namespace
from nodes.prompts import MEMORY_HEADER, REPAIR_REQUEST, SUMMARY_HEADER
from nodes.reduction import messages_to_fold
from nodes.state import Context
from nodes.tokens import count_tokens, text_of
from tests.support.fakes import ACME, BOB, ScriptedModel, connection_error, extraction
from tests.support.graphs import CONFIG, LONG, history_messages, unit_graph

USER = Context(user_id="u1")
REVIEW = Context(user_id="u1", review_memory=True)
REPAIR_PREFIX = REPAIR_REQUEST.split("{error}")[0]

Graph = CompiledStateGraph[Any, Any, Any, Any]


async def run_turn(
    graph: Graph,
    *messages: AnyMessage | str,
    context: Context = USER,
    config: RunnableConfig = CONFIG,
    **values: Any,
) -> dict[str, Any]:
    batch = [HumanMessage(m) if isinstance(m, str) else m for m in messages]
    return await graph.ainvoke({"messages": batch, **values}, config, context=context)


def marker_of(result: dict[str, Any]) -> dict[str, Any]:
    """The per-message extraction marker inside the state's `extraction` outcome (which adds counts)."""
    return {key: result["extraction"][key] for key in ("message_id", "stored", "error")}


async def entities(store: InMemoryStore, user_id: str = "u1") -> dict[str, EntityRecord]:
    items = await store.asearch(entity_namespace(user_id), limit=1000)
    return {item.key: EntityRecord.model_validate(item.value) for item in items}


async def checkpoint_before(graph: Graph, next_nodes: tuple[str, ...]) -> StateSnapshot:
    """The newest checkpoint of the test thread whose next step runs `next_nodes`."""
    async for snapshot in graph.aget_state_history(CONFIG):
        if snapshot.next == next_nodes:
            return snapshot
    raise AssertionError(f"no checkpoint before {next_nodes}")


# --- the whole turn --------------------------------------------------------------------------------


async def test_a_turn_runs_every_node_once_and_answers() -> None:
    model = ScriptedModel(scripts={"respond": ["Hello!"]})
    graph, _ = unit_graph(model)
    seen: list[str] = []
    async for update in graph.astream(
        {"messages": [HumanMessage("hi", id="h1")]}, CONFIG, context=USER, stream_mode="updates"
    ):
        seen += list(update)
    nodes = [name for name in seen if name in NODES]
    assert sorted(nodes) == sorted(NODES)
    assert nodes[:2] == ["load_memory", "respond"] and nodes[-1] == "reduce_history"
    assert set(seen) == set(NODES)  # no review: the extraction asks the model without a task
    values = (await graph.aget_state(CONFIG)).values
    assert [type(m).__name__ for m in values["messages"]] == ["HumanMessage", "AIMessage"]
    assert values["messages"][0].id == "h1"
    assert [model.count(p) for p in ("respond", "extract", "summarize")] == [1, 1, 0]
    assert "summary" not in values


# --- load_memory + respond -------------------------------------------------------------------------


async def test_respond_prompt_has_instructions_memory_and_summary_within_budget() -> None:
    model = ScriptedModel(scripts={"extract": [extraction(ACME, BOB)]})
    graph, _ = unit_graph(model, instructions="INSTRUCTIONS-X", prompt_tokens=900)
    await run_turn(
        graph,
        HumanMessage("I joined Acme Corp. with Bob", id="h1"),
        config={"configurable": {"thread_id": "t0"}},
    )
    result = await run_turn(
        graph,
        HumanMessage("How is Bob?", id="h3"),
        config={"configurable": {"thread_id": "t2"}},
        summary="SUMMARY-SO-FAR",
    )
    assert result["memory_keys"][0] == "Bob"
    assert set(result["memory_keys"]) == {"Bob", "Acme Corp."}
    system, *window = model.prompts_of("respond")[-1]
    assert isinstance(system, SystemMessage)
    assert text_of(system).startswith("INSTRUCTIONS-X")
    assert result["memory_context"].startswith(MEMORY_HEADER)
    assert result["memory_context"] in text_of(system)
    assert f"{SUMMARY_HEADER}\nSUMMARY-SO-FAR" in text_of(system)
    assert [m.id for m in window] == ["h3"]
    assert count_tokens([system, *window]) <= 900


async def test_respond_prompt_drops_old_turns_to_stay_under_prompt_tokens() -> None:
    model = ScriptedModel()
    graph, _ = unit_graph(model, prompt_tokens=700, working_set_tokens=100_000)
    await run_turn(graph, *history_messages(10), HumanMessage("newest", id="newest"))
    [prompt] = model.prompts_of("respond")
    assert count_tokens(prompt) <= 700
    assert prompt[-1].id == "newest"
    assert isinstance(prompt[1], HumanMessage)
    assert len(prompt) < 22


async def test_load_memory_budget_limits_what_respond_sees() -> None:
    model = ScriptedModel(
        scripts={"extract": [extraction(*({"type": "ORG", "value": f"Company{n:02d}"} for n in range(30)))]}
    )
    graph, store = unit_graph(model, memory_tokens=30)
    # Only names the user wrote are stored (nodes.grounding), so the message names all thirty.
    await run_turn(graph, HumanMessage(" ".join(f"Company{n:02d}" for n in range(30)), id="h1"))
    assert len(await entities(store)) == 30
    result = await run_turn(graph, HumanMessage("Company07?", id="h2"))
    assert result["memory_keys"][0] == "Company07"
    assert 0 < len(result["memory_keys"]) < 30
    assert len(result["memory_context"]) // 4 <= 30
    system = text_of(model.prompts_of("respond")[-1][0])
    assert all(f"- {value} " in system for value in result["memory_keys"])
    assert sum(f"- Company{n:02d} " in system for n in range(30)) == len(result["memory_keys"])


# --- extract_entities ------------------------------------------------------------------------------


async def test_extract_entities_upserts_the_newest_message() -> None:
    model = ScriptedModel(scripts={"extract": [extraction(ACME, BOB, {"type": "ORG", "value": ""})]})
    graph, store = unit_graph(model)
    result = await run_turn(graph, HumanMessage("I work at Acme Corp. with Bob", id="h1"))
    assert marker_of(result) == {"message_id": "h1", "stored": 2, "error": None}
    stored = await entities(store)
    assert set(stored) == {"ORG:acme", "PERSON:bob"}
    acme = stored["ORG:acme"]
    assert (acme.value, acme.mentions, acme.threads, acme.source_message_ids) == (
        "Acme Corp.",
        1,
        ["t"],
        ["h1"],
    )
    assert acme.contexts == ["works at Acme Corp."]
    marker = await store.aget(extracted_namespace("u1"), "h1")
    assert marker is not None and marker.value["stored"] == 2
    [prompt] = model.prompts_of("extract")
    assert "I work at Acme Corp. with Bob" in text_of(prompt[-1])
    assert await entities(store, "u2") == {}


async def test_a_later_message_counts_the_entity_again_across_threads() -> None:
    model = ScriptedModel(scripts={"extract": [extraction(ACME), extraction({**ACME, "value": "ACME"})]})
    graph, store = unit_graph(model)
    await run_turn(graph, HumanMessage("Acme Corp.", id="h1"))
    await run_turn(graph, HumanMessage("ACME", id="h2"), config={"configurable": {"thread_id": "t2"}})
    acme = (await entities(store))["ORG:acme"]
    assert (acme.mentions, acme.aliases, acme.threads) == (2, ["ACME"], ["t", "t2"])
    assert acme.source_message_ids == ["h1", "h2"]


async def test_replaying_extract_entities_writes_nothing_twice() -> None:
    model = ScriptedModel(scripts={"extract": [extraction(ACME)]})
    graph, store = unit_graph(model)
    await run_turn(graph, HumanMessage("I work at Acme Corp.", id="h1"))
    before = (await store.aget(entity_namespace("u1"), "ORG:acme")).value  # type: ignore[union-attr]
    # Re-run the fan-out step from its checkpoint: extract_entities runs again on message h1.
    fork = await checkpoint_before(graph, ("extract_entities", "summarize"))
    calls = model.count("extract")
    result = await graph.ainvoke(None, fork.config, context=USER)
    assert model.count("extract") == calls  # the marker short-circuits before the model
    assert (await store.aget(entity_namespace("u1"), "ORG:acme")).value == before  # type: ignore[union-attr]
    assert (await entities(store))["ORG:acme"].mentions == 1
    assert "extraction" not in result  # the re-run node returned no update


async def test_same_message_id_sent_again_is_not_extracted_again() -> None:
    model = ScriptedModel(scripts={"extract": [extraction(ACME), extraction(ACME)]})
    graph, store = unit_graph(model)
    await run_turn(graph, HumanMessage("I work at Acme Corp.", id="h1"))
    await run_turn(graph, HumanMessage("I work at Acme Corp.", id="h1"))
    assert model.count("extract") == 1
    assert (await entities(store))["ORG:acme"].mentions == 1


async def test_crash_after_upsert_before_marker_counts_nothing_twice() -> None:
    model = ScriptedModel(scripts={"extract": [extraction(ACME), extraction(ACME)]})
    graph, store = unit_graph(model)
    await run_turn(graph, HumanMessage("I work at Acme Corp.", id="h1"))
    await store.adelete(extracted_namespace("u1"), "h1")  # as if the process died before the marker
    fork = await checkpoint_before(graph, ("extract_entities", "summarize"))
    result = await graph.ainvoke(None, fork.config, context=USER)
    assert model.count("extract") == 2
    assert marker_of(result) == {"message_id": "h1", "stored": 0, "error": None}
    assert (await entities(store))["ORG:acme"].mentions == 1


async def test_malformed_extraction_gets_one_repair_then_succeeds() -> None:
    model = ScriptedModel(scripts={"extract": [extraction(args={"entities": "Acme"}), extraction(ACME)]})
    graph, store = unit_graph(model)
    result = await run_turn(graph, HumanMessage("I work at Acme Corp.", id="h1"))
    assert marker_of(result) == {"message_id": "h1", "stored": 1, "error": None}
    assert set(await entities(store)) == {"ORG:acme"}
    first, second = model.prompts_of("extract")
    assert second[-1] == first[-1]  # the user's words stay the last message
    assert REPAIR_PREFIX in text_of(second[0])


async def test_two_malformed_extractions_store_nothing_and_the_turn_completes() -> None:
    model = ScriptedModel(
        scripts={
            "respond": ["Sure."],
            "extract": [extraction(args={"things": []}), AIMessage("Acme is an org"), extraction(ACME)],
        }
    )
    graph, store = unit_graph(model)
    result = await run_turn(graph, HumanMessage("I work at Acme Corp.", id="h1"))
    assert model.count("extract") == 2
    assert await entities(store) == {}
    assert result["extraction"]["stored"] == 0
    assert isinstance(result["extraction"]["error"], str) and result["extraction"]["error"]
    assert [type(m).__name__ for m in result["messages"]] == ["HumanMessage", "AIMessage"]
    assert result["messages"][0].id == "h1"
    assert (await graph.aget_state(CONFIG)).next == ()


# --- review via interrupt --------------------------------------------------------------------------


async def start_review(turns: int = 0) -> tuple[ScriptedModel, Graph, InMemoryStore, dict[str, Any]]:
    model = ScriptedModel(scripts={"extract": [extraction(ACME, BOB)]})
    graph, store = unit_graph(model, working_set_tokens=600)
    result = await run_turn(
        graph, *history_messages(turns), HumanMessage("Acme Corp. and Bob", id="h1"), context=REVIEW
    )
    return model, graph, store, result


async def test_review_pauses_with_the_proposed_entities() -> None:
    model, graph, store, result = await start_review()
    assert (model.count("extract"), model.count("respond")) == (1, 1)
    [pending] = result["__interrupt__"]
    assert pending.value == {"type": "memory_review", "message_id": "h1", "entities": [ACME, BOB]}
    assert await entities(store) == {}
    assert await store.aget(extracted_namespace("u1"), "h1") is None
    assert (await graph.aget_state(CONFIG)).next == ("extract_entities",)


@pytest.mark.parametrize(
    ("decision", "expected"),
    [
        ("approve", {"ORG:acme", "PERSON:bob"}),
        ("reject", set()),
        ([{"type": "PERSON", "value": "Robert", "context": "edited"}], {"PERSON:robert"}),
    ],
)
async def test_resuming_a_review_stores_what_the_reviewer_kept_without_calling_the_model(
    decision: Any, expected: set[str]
) -> None:
    model, graph, store, _ = await start_review(turns=6)  # over budget: summarize ran beside the review
    calls = model.count()
    assert model.count("summarize") == 1
    result = await graph.ainvoke(Command(resume=decision), CONFIG, context=REVIEW)
    assert model.count() == calls
    assert set(await entities(store)) == expected
    assert marker_of(result) == {"message_id": "h1", "stored": len(expected), "error": None}
    assert (await graph.aget_state(CONFIG)).next == ()
    if isinstance(decision, list):
        robert = (await entities(store))["PERSON:robert"]
        assert (robert.value, robert.contexts, robert.mentions) == ("Robert", ["edited"], 1)
    assert result["summary"] == "SUMMARY-1"


async def test_no_review_when_nothing_was_found() -> None:
    model = ScriptedModel()
    graph, store = unit_graph(model)
    result = await run_turn(graph, HumanMessage("hello", id="h1"), context=REVIEW)
    assert "__interrupt__" not in result
    assert await store.aget(extracted_namespace("u1"), "h1") is not None
    assert marker_of(result) == {"message_id": "h1", "stored": 0, "error": None}


# --- summarize + reduce_history ----------------------------------------------------------------------


async def folded_step(graph: Graph) -> dict[str, Any]:
    """Values of the checkpoint where summarize has written and reduce_history is about to run."""
    return (await checkpoint_before(graph, ("reduce_history",))).values


async def test_over_budget_turn_folds_into_the_summary_and_reduces_the_working_set() -> None:
    model = ScriptedModel(scripts={"summarize": ["SUMMARY-A"]})
    graph, _ = unit_graph(model, working_set_tokens=600)
    result = await run_turn(
        graph,
        *history_messages(6),
        HumanMessage("newest question", id="newest"),
        summary="PREV-SUMMARY",
    )
    before = await folded_step(graph)
    expected = [m.id for m in messages_to_fold(before["messages"], 600)]
    assert expected and before["summarized_ids"] == expected
    assert result["summary"] == "SUMMARY-A"
    assert result["summarized_ids"] == []
    assert [m.id for m in result["messages"]] == [m.id for m in before["messages"] if m.id not in expected]
    assert "newest" in [m.id for m in result["messages"]]
    assert not any(m.id in expected for m in result["messages"])
    assert all(not isinstance(m, SystemMessage) for m in result["messages"])
    assert count_tokens(result["messages"]) <= 600
    [prompt] = model.prompts_of("summarize")
    body = text_of(prompt[-1])
    assert "PREV-SUMMARY" in body
    assert "newest question" not in body


async def test_the_next_fold_merges_the_previous_summary() -> None:
    model = ScriptedModel(scripts={"summarize": ["SUMMARY-A", "SUMMARY-B"]})
    graph, _ = unit_graph(model, working_set_tokens=600)
    await run_turn(graph, *history_messages(6), HumanMessage("first", id="n1"))
    result = await run_turn(
        graph,
        *[HumanMessage(f"more {LONG}", id=f"m{n}") for n in range(6)],
        HumanMessage("second", id="n2"),
    )
    assert model.count("summarize") == 2
    assert "Previous summary:\nSUMMARY-A" in text_of(model.prompts_of("summarize")[1][-1])
    assert result["summary"] == "SUMMARY-B"
    assert result["messages"][-1].id != "n2" and "n2" in [m.id for m in result["messages"]]


async def test_under_budget_nothing_is_folded() -> None:
    model = ScriptedModel()
    graph, _ = unit_graph(model)
    result = await run_turn(graph, *history_messages(2), HumanMessage("q", id="q"))
    assert model.count("summarize") == 0
    assert len(result["messages"]) == 6
    assert "summary" not in result


# --- retries ---------------------------------------------------------------------------------------


async def test_transient_respond_error_is_retried_and_the_turn_completes() -> None:
    model = ScriptedModel(scripts={"respond": [connection_error(), "Back online."]})
    graph, _ = unit_graph(model)
    result = await run_turn(graph, HumanMessage("hi", id="h1"))
    assert model.count("respond") == 2
    assert [type(m).__name__ for m in result["messages"]] == ["HumanMessage", "AIMessage"]
    assert (await graph.aget_state(CONFIG)).next == ()


async def test_transient_extraction_error_is_retried() -> None:
    model = ScriptedModel(scripts={"extract": [connection_error(), extraction(ACME)]})
    graph, store = unit_graph(model)
    result = await run_turn(graph, HumanMessage("Acme Corp.", id="h1"))
    assert model.count("extract") == 2
    assert result["extraction"]["stored"] == 1
    assert (await entities(store))["ORG:acme"].mentions == 1


async def test_non_transient_error_is_not_retried() -> None:
    model = ScriptedModel(scripts={"respond": [ValueError("bad request shape"), "never used"]})
    graph, _ = unit_graph(model)
    with pytest.raises(ValueError, match="bad request shape"):
        await run_turn(graph, HumanMessage("hi", id="h1"))
    assert model.count("respond") == 1


async def test_retries_stop_after_max_attempts() -> None:
    model = ScriptedModel(scripts={"respond": [connection_error(), connection_error(), "too late"]})
    graph, _ = unit_graph(model, model_retries=2)
    with pytest.raises(openai.APIConnectionError):
        await run_turn(graph, HumanMessage("hi", id="h1"))
    assert model.count("respond") == 2
