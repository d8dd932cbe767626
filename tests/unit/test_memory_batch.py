"""MemoryBatch and the store round trips of extract_entities and load_memory: two reads and one write."""

from __future__ import annotations

from langgraph.store.base import GetOp, Op, PutOp, SearchOp

from nodes.memory_batch import MemoryBatch
from nodes.namespaces import (
    entity_index_namespace,
    entity_namespace,
    extracted_namespace,
    profile_namespace,
)
from tests.support.fakes import CountingStore
from tests.unit.test_extraction import ExtractionModel, compile_node, entities, markers, say
from tests.unit.test_load_memory import fillers, load, record, remember, with_profile

NAMESPACE = ("u", "docs")


def kinds(batch: list[Op]) -> set[type]:
    return {type(op) for op in batch}


def put_namespaces(batch: list[Op]) -> set[tuple[str, ...]]:
    return {op.namespace for op in batch if isinstance(op, PutOp)}


# --- MemoryBatch ------------------------------------------------------------------------------------


async def test_reads_are_fetched_once_and_writes_are_seen_before_they_land() -> None:
    store = CountingStore()
    await store.aput(NAMESPACE, "a", {"v": 1})
    store.reset()
    memory = MemoryBatch(store)
    await memory.read([(NAMESPACE, "a"), (NAMESPACE, "b")], [SearchOp(NAMESPACE, limit=5)])
    await memory.read([(NAMESPACE, "a")], [SearchOp(NAMESPACE, limit=5)])  # all known: no round trip
    assert len(store.batches) == 1
    assert memory.value(NAMESPACE, "a") == {"v": 1} and memory.value(NAMESPACE, "b") is None
    assert [item.key for item in await memory.search(NAMESPACE, None, 5)] == ["a"]
    memory.put(NAMESPACE, "b", {"v": 2})
    memory.put(NAMESPACE, "a", None)
    memory.put(NAMESPACE, "b", {"v": 3})  # the last write of a document wins
    assert memory.value(NAMESPACE, "b") == {"v": 3} and memory.value(NAMESPACE, "a") is None
    assert await store.aget(NAMESPACE, "b") is None, "nothing lands before flush"
    store.reset()
    await memory.flush()
    await memory.flush()  # nothing queued: no round trip
    assert [[(op.key, op.value) for op in batch] for batch in store.batches] == [
        [("b", {"v": 3}), ("a", None)]
    ]


# --- extract_entities ---------------------------------------------------------------------------------


async def test_an_extraction_reads_twice_and_writes_everything_in_one_batch() -> None:
    store = CountingStore()
    graph, _ = compile_node(ExtractionModel(), store)
    await say(graph, "My name is Ada. I met Bob in Paris.", ids=["h1"])
    assert [kinds(batch) for batch in store.batches] == [{GetOp}, {GetOp}, {PutOp}]
    assert put_namespaces(store.batches[-1]) == {
        entity_namespace("u1"),
        entity_index_namespace("u1"),
        profile_namespace("u1"),
        extracted_namespace("u1"),
    }
    writes = [op.namespace for op in store.batches[-1]]
    assert writes[-1] == extracted_namespace("u1"), "the markers are queued last"
    assert {r.value for r in (await entities(store)).values()} == {"Ada", "Bob", "Paris"}


async def test_the_marker_read_skips_messages_state_says_were_extracted() -> None:
    store = CountingStore()
    graph, _ = compile_node(ExtractionModel(), store)
    await say(graph, "I met Bob in Paris.", ids=["h1"])
    store.reset()
    result = await say(graph, "I met Bob in Paris again.", ids=["h2"])
    marker_reads = [op.key for op in store.ops(GetOp) if op.namespace == extracted_namespace("u1")]
    assert marker_reads == ["h2"]
    assert [kinds(batch) for batch in store.batches] == [{GetOp}, {GetOp}, {PutOp}]
    assert result["extraction"]["resolution"]["normalized"] == 2
    assert {r.value: r.mentions for r in (await entities(store)).values()} == {"Bob": 2, "Paris": 2}


async def test_an_extraction_replayed_without_its_markers_counts_no_mention_twice() -> None:
    """A store that wrote the batch's records but not its markers (one that writes in order and stopped,
    or markers forgotten since): the re-run resolves every entity to its record and writes no mention."""
    store = CountingStore()
    model = ExtractionModel()
    graph, _ = compile_node(model, store)
    await say(graph, "I met Bob in Paris.", ids=["h1"])
    assert len(model.prompts) == 1
    before = await entities(store)
    for key in await markers(store):
        await store.adelete(extracted_namespace("u1"), key)
    fresh, _ = compile_node(model, store)  # a new thread: its state knows nothing of h1
    result = await say(fresh, "I met Bob in Paris.", ids=["h1"])
    assert len(model.prompts) == 2, "no marker: the message is extracted again"
    assert result["extraction"]["stored"] == 0
    assert await entities(store) == before
    assert set(await markers(store)) == {"h1"}


# --- load_memory --------------------------------------------------------------------------------------


async def test_load_memory_reads_in_one_round_trip_when_the_searches_bring_every_match() -> None:
    store = CountingStore()
    await with_profile(store)
    await remember(store, record("Acme"))
    store.reset()
    update = await load(store, "what about Acme?")
    assert update["memory_keys"] == ["Acme"] and update["memory_trace"][0]["key"] == "profile"
    [batch] = store.batches
    assert kinds(batch) == {GetOp, SearchOp}


async def test_load_memory_reads_matches_past_the_recent_window_in_a_second_round_trip() -> None:
    store = CountingStore()
    await with_profile(store)
    await remember(store, *fillers(30), record("Acme"))  # past the recent window, as there
    store.reset()
    update = await load(store, "what about Acme?")
    assert update["memory_keys"][0] == "Acme"
    assert [kinds(batch) for batch in store.batches] == [{GetOp, SearchOp}, {GetOp}]
