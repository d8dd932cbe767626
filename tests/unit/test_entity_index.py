"""entity_index: name words, the per-user word documents, and look-ups whose cost ignores the entity count."""

from __future__ import annotations

import pytest
from langgraph.store.base import GetOp, PutOp, SearchOp
from langgraph.store.memory import InMemoryStore

from nodes.entity_index import (
    MAX_KEYS_PER_WORD,
    MAX_QUERY_WORDS,
    entity_keys_for,
    index_entity,
    name_words,
    unindex_entity,
)
from nodes.namespaces import entity_index_namespace
from tests.support.fakes import CountingStore


@pytest.mark.parametrize(
    ("text", "words"),
    [
        ("The Bank of America Corp.", {"bank", "america"}),
        ("UK", {"uk"}),
        ("Go and Rust", {"go", "rust"}),
        ("\uff21\uff43\uff4d\uff45 Inc", {"acme"}),  # full-width letters fold to ascii
        ("C++ and C#", {"c++", "c#"}),
        ("Straße", {"strasse"}),
        ("the of and", set()),
    ],
)
def test_name_words(text: str, words: set[str]) -> None:
    assert name_words(text) == words


async def test_keys_are_found_by_shared_words_most_shared_first() -> None:
    store = InMemoryStore()
    await index_entity(store, "u1", "ORG:bank_of_america", ["Bank of America", "BofA"])
    await index_entity(store, "u1", "LOC:america", ["America"])
    await index_entity(store, "u1", "ORG:river_bank", ["River Bank"])
    await index_entity(store, "u2", "ORG:other", ["Bank"])
    first, *others = await entity_keys_for(store, "u1", name_words("Is Bank of America open?"))
    assert first == "ORG:bank_of_america"
    assert sorted(others) == ["LOC:america", "ORG:river_bank"]  # one shared word each
    assert await entity_keys_for(store, "u1", ["bofa"]) == ["ORG:bank_of_america"]
    assert await entity_keys_for(store, "u1", ["Bank"], limit=1) == ["ORG:river_bank"]
    assert await entity_keys_for(store, "u1", ["nothing"]) == []
    assert await entity_keys_for(store, "u1", []) == []
    assert await entity_keys_for(store, "u3", ["bank"]) == []


async def test_index_writes_only_changes_in_two_round_trips() -> None:
    store = CountingStore()
    await index_entity(store, "u1", "ORG:acme", ["Acme Widgets", "ACME"])
    assert len(store.batches) == 2
    assert sorted(op.key for op in store.ops(PutOp)) == ["acme", "widgets"]
    store.reset()
    await index_entity(store, "u1", "ORG:acme", ["Acme Widgets", "Acme"])  # nothing new
    assert len(store.batches) == 1
    assert store.ops(PutOp) == []
    assert all(op.index is False for op in store.ops(PutOp))


async def test_unindex_forgets_the_key_and_empty_documents() -> None:
    store = InMemoryStore()
    await index_entity(store, "u1", "ORG:acme", ["Acme Widgets"])
    await index_entity(store, "u1", "PRODUCT:widgets", ["Widgets"])
    await unindex_entity(store, "u1", "ORG:acme", ["Acme Widgets"])
    assert await entity_keys_for(store, "u1", ["acme", "widgets"]) == ["PRODUCT:widgets"]
    assert {item.key for item in await store.asearch(entity_index_namespace("u1"))} == {"widgets"}


async def test_a_word_document_stays_bounded_and_keeps_the_newest_keys() -> None:
    store = InMemoryStore()
    for n in range(MAX_KEYS_PER_WORD + 5):
        await index_entity(store, "u1", f"PERSON:john_{n}", [f"John {n}"])
    keys = await entity_keys_for(store, "u1", ["john"], limit=1000)
    assert len(keys) == MAX_KEYS_PER_WORD
    assert keys[0] == f"PERSON:john_{MAX_KEYS_PER_WORD + 4}"
    assert "PERSON:john_0" not in keys


async def test_lookup_cost_does_not_grow_with_the_entity_count() -> None:
    counts = []
    for entities in (10, 1000):
        store = CountingStore()
        for n in range(entities):
            await index_entity(store, "u1", f"ORG:company_{n}", [f"Company {n}"])
        await index_entity(store, "u1", "ORG:acme", ["Acme"])
        store.reset()
        assert (await entity_keys_for(store, "u1", name_words("what about Acme and Globex?")))[:1] == [
            "ORG:acme"
        ]
        assert not store.ops(SearchOp)
        counts.append((len(store.batches), len(store.ops(GetOp))))
    assert counts[0] == counts[1] == (1, 4)  # one round trip: what, about, acme, globex


async def test_a_huge_message_reads_a_bounded_number_of_documents() -> None:
    store = CountingStore()
    await entity_keys_for(store, "u1", [f"word{n}" for n in range(5000)])
    assert len(store.ops(GetOp)) == MAX_QUERY_WORDS
