"""extract_entities in a one-node graph: every-N and new-content rules, profile, bad model output, review."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import UTC, datetime
from typing import Any

import pytest
from langchain_core.messages import AIMessage, BaseMessage, HumanMessage
from langchain_core.runnables import RunnableConfig
from langgraph.checkpoint.memory import InMemorySaver
from langgraph.graph import END, START, StateGraph
from langgraph.graph.state import CompiledStateGraph
from langgraph.store.memory import InMemoryStore
from langgraph.types import Command
from pydantic import Field

from nodes.entity_index import index_entity
from nodes.extract_entities import make_extract_entities, store_entities
from nodes.extraction_batch import MAX_BATCH_MESSAGES, content_words, has_new_content
from nodes.memory import EntityRecord
from nodes.memory_batch import MemoryBatch
from nodes.namespaces import entity_namespace, extracted_namespace
from nodes.profile import load_profile
from nodes.state import Context, State
from nodes.tokens import text_of
from tests.fake_openai import extract_entities, extract_profile
from tests.support.fakes import RecordingChatModel, ticking_clock, tool_call

CONFIG: RunnableConfig = {"configurable": {"thread_id": "t"}}
Graph = CompiledStateGraph[Any, Any, Any, Any]


def not_json(raw: str = '{"entities": [{"type": "ORG", "value": "Ac') -> AIMessage:
    """What langchain-openai makes of tool-call arguments that are not valid JSON."""
    invalid = {
        "name": "Extraction",
        "args": raw,
        "id": "c1",
        "error": "not JSON",
        "type": "invalid_tool_call",
    }
    return AIMessage(content="", invalid_tool_calls=[invalid])


class ExtractionModel(RecordingChatModel):
    """Scripted replies first, then the fake server's rules on the request text; records every prompt."""

    script: list[AIMessage] = Field(default_factory=list)

    def next_reply(self, messages: list[BaseMessage]) -> AIMessage:
        if self.script:
            return self.script.pop(0)
        text = text_of(messages[-1])
        args: dict[str, Any] = {"entities": extract_entities(text)}
        if profile := extract_profile(text):
            args["profile"] = profile
        return tool_call(args)


def compile_node(
    model: ExtractionModel, store: InMemoryStore | None = None, **cadence: Any
) -> tuple[Graph, InMemoryStore]:
    """extract_entities alone; `cadence` is its extract_every / new_content_only."""
    store = store or InMemoryStore()
    builder = StateGraph(State, context_schema=Context)
    node = make_extract_entities(model, clock=ticking_clock(), max_attempts=1, **cadence)
    builder.add_node("extract_entities", node)
    builder.add_edge(START, "extract_entities")
    builder.add_edge("extract_entities", END)
    return builder.compile(checkpointer=InMemorySaver(), store=store), store


async def say(
    graph: Graph, *texts: str, context: Context | None = None, ids: Sequence[str] = ()
) -> dict[str, Any]:
    messages = [HumanMessage(text, id=ids[n] if ids else None) for n, text in enumerate(texts)]
    return await graph.ainvoke({"messages": messages}, CONFIG, context=context or Context(user_id="u1"))


async def entities(store: InMemoryStore) -> dict[str, EntityRecord]:
    items = await store.asearch(entity_namespace("u1"), limit=1000)
    return {item.key: EntityRecord.model_validate(item.value) for item in items}


async def markers(store: InMemoryStore) -> dict[str, dict[str, Any]]:
    return {item.key: item.value for item in await store.asearch(extracted_namespace("u1"), limit=1000)}


# --- extract every N turns -----------------------------------------------------------------------------


async def test_extract_every_n_waits_for_n_messages_then_covers_them_in_one_call() -> None:
    model = ExtractionModel()
    graph, store = compile_node(model, extract_every=3)
    first = await say(graph, "I met Bob in Paris.", ids=["h1"])
    second = await say(graph, "Then we flew to Rome.", ids=["h2"])
    assert model.prompts == []
    assert "extraction" not in first and "extraction" not in second
    assert await markers(store) == {}

    third = await say(graph, "Bob works at Acme now.", ids=["h3"])
    [prompt] = model.prompts
    request = text_of(prompt[-1])
    assert all(text in request for text in ["Bob in Paris", "flew to Rome", "works at Acme"])
    assert set(await markers(store)) == {"h1", "h2", "h3"}
    assert third["extraction"]["message_ids"] == ["h1", "h2", "h3"]
    stored = {r.value: r.source_message_ids for r in (await entities(store)).values()}
    # Each entity is credited to the newest message that names it.
    assert stored == {"Bob": ["h3"], "Paris": ["h1"], "Rome": ["h2"], "Acme": ["h3"]}

    await say(graph, "Nothing yet.", ids=["h4"])
    assert len(model.prompts) == 1  # the count starts again from the messages still waiting


async def test_extract_every_one_extracts_each_turn_and_never_twice() -> None:
    model = ExtractionModel()
    graph, store = compile_node(model)
    await say(graph, "I work at Acme.", ids=["h1"])
    await say(graph, "We all like Acme.", ids=["h2"])
    assert len(model.prompts) == 2
    assert "I work at Acme." not in text_of(model.prompts[1][-1])  # h1 was not asked about again
    assert (await entities(store))["ORG:acme"].mentions == 2


async def test_a_flood_of_messages_is_bounded_to_one_call_over_the_newest() -> None:
    model = ExtractionModel()
    graph, store = compile_node(model)
    texts = [f"Message {n} about Place{n}." for n in range(MAX_BATCH_MESSAGES + 2)]
    result = await say(graph, *texts, ids=[f"h{n}" for n in range(len(texts))])
    assert len(model.prompts) == 1
    assert result["extraction"]["message_ids"] == [f"h{n}" for n in range(2, len(texts))]
    assert "Place0" not in text_of(model.prompts[0][-1])
    marks = await markers(store)
    assert len(marks) == len(texts)
    assert marks["h0"]["skipped"] is True


# --- new content only ----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "words"),
    [("ok thanks!", set()), ("Yes, great, thank you.", set()), ("I moved to Lisbon", {"moved", "lisbon"})],
)
def test_content_words_ignore_filler_and_acknowledgements(text: str, words: set[str]) -> None:
    assert content_words(text) == words


async def test_has_new_content_knows_remembered_names() -> None:
    store = InMemoryStore()
    await store_entities(
        store,
        "u1",
        [{"type": "PERSON", "value": "Ada Lovelace"}],
        message_ids=["m0"],
        thread_id="t",
        now=datetime.now(UTC).isoformat(),
    )
    assert not await has_new_content(MemoryBatch(store), "u1", [HumanMessage("ok, Ada Lovelace!")])
    assert not await has_new_content(MemoryBatch(store), "u1", [HumanMessage("ok thanks")])
    assert await has_new_content(MemoryBatch(store), "u1", [HumanMessage("Ada moved to Lisbon")])


async def test_new_content_only_skips_filler_and_known_names_without_a_model_call() -> None:
    model = ExtractionModel()
    graph, store = compile_node(model, new_content_only=True)
    await say(graph, "I work at Acme.", ids=["h1"])
    assert len(model.prompts) == 1
    for n, text in enumerate(["ok thanks", "Acme!", "yes, Acme, great"], start=2):
        result = await say(graph, text, ids=[f"h{n}"])
        assert result["extraction"]["skipped"] == "no new content"
    assert len(model.prompts) == 1
    assert set(await markers(store)) == {"h1", "h2", "h3", "h4"}
    assert (await entities(store))["ORG:acme"].mentions == 1

    await say(graph, "I moved to Lisbon.", ids=["h5"])
    assert len(model.prompts) == 2
    assert "LOC:lisbon" in await entities(store)


async def test_without_the_flag_filler_is_still_extracted() -> None:
    model = ExtractionModel()
    graph, _ = compile_node(model)
    await say(graph, "ok thanks", ids=["h1"])
    assert len(model.prompts) == 1


# --- profile ---------------------------------------------------------------------------------------------


async def test_profile_facts_are_stored_with_the_entities() -> None:
    model = ExtractionModel()
    graph, store = compile_node(model)
    result = await say(graph, "My name is Ada. I live in Lisbon and I like chess and jazz.", ids=["h1"])
    assert result["extraction"]["profile_updated"] is True
    profile = await load_profile(store, "u1")
    assert profile is not None
    assert profile.name == "Ada"
    assert profile.current_facts() == {"lives_in": "Lisbon"}
    assert profile.interests == ["chess", "jazz"]
    assert "LOC:lisbon" in await entities(store)


# --- bad model output ------------------------------------------------------------------------------------

ACME = {"type": "ORG", "value": "Acme", "context": "", "confidence": 0.9}


async def test_arguments_that_are_not_json_get_one_repair() -> None:
    model = ExtractionModel(script=[not_json()])
    graph, store = compile_node(model)
    result = await say(graph, "I work at Acme.", ids=["h1"])
    assert len(model.prompts) == 2
    assert "not valid JSON" in text_of(model.prompts[1][0])
    assert result["extraction"]["error"] is None
    assert set(await entities(store)) == {"ORG:acme"}


async def test_arguments_that_stay_invalid_store_nothing_and_the_turn_completes() -> None:
    model = ExtractionModel(script=[not_json(), not_json("[[[")])
    graph, store = compile_node(model)
    result = await say(graph, "I work at Acme.", ids=["h1"])
    assert "not valid JSON" in result["extraction"]["error"]
    assert result["extraction"]["stored"] == 0
    assert await entities(store) == {}
    assert await load_profile(store, "u1") is None
    assert (await markers(store))["h1"]["error"] == result["extraction"]["error"]
    assert (await graph.aget_state(CONFIG)).next == ()


async def test_empty_and_absurd_entities_are_dropped_and_the_rest_kept() -> None:
    bad = [
        {"type": "ORG", "value": ""},
        {"type": "ORG", "value": "x" * 5000},
        {"type": "ORG", "value": "w " * 50},
    ]
    model = ExtractionModel(script=[tool_call({"entities": [*bad, ACME]})])
    graph, store = compile_node(model)
    result = await say(graph, "I work at Acme.", ids=["h1"])
    assert len(model.prompts) == 1  # single bad entities are dropped, not repaired
    assert result["extraction"]["stored"] == 1
    assert set(await entities(store)) == {"ORG:acme"}


async def test_an_absurd_profile_gets_a_repair_then_is_dropped_keeping_the_entities() -> None:
    absurd = {"name": "Ada" * 2000, "facts": [{"attribute": "lives_in", "value": "Lisbon"}]}
    model = ExtractionModel(
        script=[
            tool_call({"entities": [ACME], "profile": absurd}),
            tool_call({"entities": [ACME], "profile": absurd}),
        ]
    )
    graph, store = compile_node(model)
    result = await say(graph, "I work at Acme.", ids=["h1"])
    assert len(model.prompts) == 2
    assert result["extraction"]["error"] is None
    assert result["extraction"]["profile_updated"] is False
    assert await load_profile(store, "u1") is None
    assert set(await entities(store)) == {"ORG:acme"}


async def test_a_repaired_profile_is_stored() -> None:
    model = ExtractionModel(script=[tool_call({"entities": [], "profile": {"facts": "everything"}})])
    graph, store = compile_node(model)
    await say(graph, "My name is Ada.", ids=["h1"])
    profile = await load_profile(store, "u1")
    assert profile is not None and profile.name == "Ada"


# --- review and resume -------------------------------------------------------------------------------------

REVIEW = Context(user_id="u1", review_memory=True)
INTRODUCTION = "My name is Ada and I work at Acme."


async def test_review_shows_the_profile_and_approval_stores_it() -> None:
    model = ExtractionModel()
    graph, store = compile_node(model)
    paused = await say(graph, INTRODUCTION, context=REVIEW, ids=["h1"])
    [pending] = paused["__interrupt__"]
    assert pending.value["profile"] == {"name": "Ada", "facts": [{"attribute": "works_at", "value": "Acme"}]}
    assert await load_profile(store, "u1") is None and await entities(store) == {}

    done = await graph.ainvoke(Command(resume="approve"), CONFIG, context=REVIEW)
    assert len(model.prompts) == 1  # the proposal is a task: resuming did not ask again
    assert done["extraction"]["profile_updated"] is True
    profile = await load_profile(store, "u1")
    assert profile is not None and profile.current_facts() == {"works_at": "Acme"}


@pytest.mark.parametrize(
    ("answer", "name"),
    [
        ("reject", None),
        ([{"type": "ORG", "value": "Acme"}], None),
        ({"entities": [], "profile": {"name": "Ada L."}}, "Ada L."),
    ],
    ids=["reject", "edited-list", "edited-with-profile"],
)
async def test_review_answer_decides_the_profile(answer: Any, name: str | None) -> None:
    graph, store = compile_node(ExtractionModel())
    await say(graph, INTRODUCTION, context=REVIEW, ids=["h1"])
    await graph.ainvoke(Command(resume=answer), CONFIG, context=REVIEW)
    profile = await load_profile(store, "u1")
    assert (profile.name if profile else None) == name


async def rows(store: InMemoryStore) -> list[tuple[tuple[str, ...], str, dict[str, Any]]]:
    items = await store.asearch(("convomem", "users", "u1"), limit=10_000)
    return sorted((item.namespace, item.key, item.value) for item in items)


async def test_a_resumed_review_replayed_after_a_lost_marker_writes_nothing_twice() -> None:
    proposal = {"entities": [ACME, {**ACME, "value": "ACME Corp."}], "profile": {"name": "Ada"}}
    model = ExtractionModel(script=[tool_call(proposal), tool_call(proposal)])
    graph, store = compile_node(model)
    await say(graph, "I work at Acme, ACME Corp. My name is Ada.", context=REVIEW, ids=["h1"])
    await graph.ainvoke(Command(resume="approve"), CONFIG, context=REVIEW)
    before = await rows(store)
    assert (await entities(store))["ORG:acme"].aliases == ["ACME Corp."]

    await store.adelete(extracted_namespace("u1"), "h1")  # as if the process died before the marker
    paused = [s async for s in graph.aget_state_history(CONFIG) if s.next == ("extract_entities",)]
    replayed = await graph.ainvoke(None, paused[0].config, context=Context(user_id="u1"))
    assert replayed["extraction"]["message_id"] == "h1"  # the node ran again on the same message
    after = await rows(store)
    marker_free = [row for row in after if row[0] != extracted_namespace("u1")]
    assert marker_free == [row for row in before if row[0] != extracted_namespace("u1")]
    assert (await entities(store))["ORG:acme"].mentions == 1


async def test_an_index_entry_without_its_record_is_ignored() -> None:
    store = InMemoryStore()
    await index_entity(store, "u1", "ORG:gone", ["Acme"])  # e.g. the record was deleted by hand
    graph, store = compile_node(ExtractionModel(), store)
    await say(graph, "I work at Acme. Acme is big.", ids=["h1"])
    assert set(await entities(store)) == {"ORG:acme"}
