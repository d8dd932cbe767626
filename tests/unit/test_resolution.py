"""resolution: one record per real entity (normalization, aliases, typos, types, semantic), bounded reads."""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

import pytest
from langgraph.store.base import GetOp, SearchOp
from langgraph.store.memory import InMemoryStore

from nodes.extract_entities import store_entities
from nodes.memory import EntityCandidate, EntityRecord
from nodes.namespaces import entity_namespace
from nodes.resolution import (
    CANDIDATE_LIMIT,
    SIMILARITY_THRESHOLD,
    best_match,
    name_similarity,
    resolve_entity,
    type_affinity,
)
from tests.fake_openai import embed
from tests.support.fakes import CountingStore

T0 = "2026-01-01T00:00:00+00:00"


def entity(value: str, type: str = "ORG", **extra: Any) -> dict[str, Any]:
    return {"type": type, "value": value, "context": "", "confidence": 0.8, **extra}


async def remember(
    store: InMemoryStore, *proposed: tuple[str, dict[str, Any]], **options: Any
) -> dict[str, int]:
    """Store (message id, entity) pairs one message at a time; the resolution counts summed."""
    totals: dict[str, int] = {}
    for message_id, raw in proposed:
        stored = await store_entities(
            store, "u1", [raw], message_ids=[message_id], thread_id="t", now=T0, **options
        )
        for kind, count in stored.resolution.items():
            totals[kind] = totals.get(kind, 0) + count
    return {kind: count for kind, count in totals.items() if count}


async def records(store: InMemoryStore) -> dict[str, EntityRecord]:
    items = await store.asearch(entity_namespace("u1"), limit=1000)
    return {item.key: EntityRecord.model_validate(item.value) for item in items}


async def rows(store: InMemoryStore) -> list[tuple[tuple[str, ...], str, dict[str, Any]]]:
    """Every row of the user's memory (entities and the word index), comparable across runs."""
    items = await store.asearch(("convomem", "users", "u1"), limit=10_000)
    return sorted((item.namespace, item.key, item.value) for item in items)


# --- pure rules ------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("proposed", "stored", "affinity"),
    [
        ("ORG", "ORG", "same"),
        ("OTHER", "PERSON", "loose"),
        ("PERSON", "OTHER", "loose"),
        ("ORG", "PRODUCT", "loose"),
        ("TECH", "PRODUCT", "loose"),
        ("PERSON", "LOC", None),
        ("ORG", "PERSON", None),
        ("DATE", "EVENT", None),
    ],
)
def test_type_affinity(proposed: str, stored: str, affinity: str | None) -> None:
    assert type_affinity(proposed, stored) == affinity


@pytest.mark.parametrize(
    ("left", "right"),
    [
        ("ada lovelase", "ada lovelace"),
        ("kubernets", "kubernetes"),
        ("jon smith", "john smith"),
        ("microsfot", "microsoft"),
        ("berlín", "berlin"),
    ],
)
def test_typos_are_similar(left: str, right: str) -> None:
    assert name_similarity(left, right) >= SIMILARITY_THRESHOLD


@pytest.mark.parametrize(
    ("left", "right"),
    [
        ("paris", "parma"),
        ("austria", "australia"),
        ("anna", "anne"),
        ("bob smith", "rob smith"),  # 0.89 letter by letter, but another first letter
        ("iphone 14", "iphone 15"),  # 0.89 letter by letter, but another number
        ("new york", "new york city"),
        ("ada", "ada lovelace"),
    ],
)
def test_different_names_are_not_similar(left: str, right: str) -> None:
    assert name_similarity(left, right) < SIMILARITY_THRESHOLD


def stored(value: str, type: str = "ORG", aliases: Iterable[str] = (), mentions: int = 1) -> EntityRecord:
    return EntityRecord(
        type=type, value=value, aliases=list(aliases), first_seen=T0, last_seen=T0, mentions=mentions
    )


def test_best_match_prefers_exact_then_alias_then_similar_and_same_type() -> None:
    records = [
        ("ORG:acne", stored("Acne")),
        ("PRODUCT:acme", stored("Acme", "PRODUCT", mentions=9)),
        ("ORG:acme", stored("Acme")),
        ("ORG:apex", stored("Apex", aliases=["ACME Corp."])),
    ]
    found = best_match(EntityCandidate(type="ORG", value="ACME, Inc."), records)
    assert found is not None and (found.key, found.how) == ("ORG:acme", "normalized")
    found = best_match(EntityCandidate(type="ORG", value="ACME"), records[:2] + records[3:])
    assert found is not None and (found.key, found.how) == ("ORG:apex", "alias")  # same type beats PRODUCT
    found = best_match(EntityCandidate(type="ORG", value="Acmee"), records[:1] + records[2:3])
    assert found is not None and (found.key, found.how) == ("ORG:acme", "similar")


def test_best_match_never_crosses_incompatible_types_or_fuzzes_loose_ones() -> None:
    assert (
        best_match(
            EntityCandidate(type="LOC", value="Jordan"), [("PERSON:jordan", stored("Jordan", "PERSON"))]
        )
        is None
    )
    # ORG vs PRODUCT merges on the exact name only, never on a look-alike.
    assert best_match(EntityCandidate(type="PRODUCT", value="Acmee"), [("ORG:acme", stored("Acme"))]) is None


# --- store_entities: what lands in the store --------------------------------------------------------


async def test_the_acme_family_becomes_one_record_with_aliases() -> None:
    store = InMemoryStore()
    counts = await remember(
        store,
        ("m1", entity("Acme")),
        ("m2", entity("ACME Corp.")),
        ("m3", entity("Acme Corporation")),
        ("m4", entity("acme", "OTHER")),
        ("m5", entity("Acme", "PRODUCT")),
    )
    found = await records(store)
    assert list(found) == ["ORG:acme"]
    acme = found["ORG:acme"]
    assert acme.value == "Acme"
    assert acme.aliases == ["ACME Corp.", "Acme Corporation"]  # "acme" differs from "Acme" only in case
    assert acme.mentions == 5
    assert acme.source_message_ids == ["m1", "m2", "m3", "m4", "m5"]
    assert counts == {"new": 1, "normalized": 4}


async def test_a_typo_merges_and_is_then_known_as_an_alias() -> None:
    store = InMemoryStore()
    counts = await remember(
        store,
        ("m1", entity("Ada Lovelace", "PERSON")),
        ("m2", entity("Ada Lovelase", "PERSON")),
        ("m3", entity("ada  lovelase", "PERSON")),
    )
    [ada] = (await records(store)).values()
    assert (ada.value, ada.aliases, ada.mentions) == ("Ada Lovelace", ["Ada Lovelase"], 3)
    assert counts == {"new": 1, "similar": 1, "alias": 1}


@pytest.mark.parametrize(
    ("first", "second"),
    [
        (entity("Paris", "LOC"), entity("Parma", "LOC")),
        (entity("Jordan", "PERSON"), entity("Jordan", "LOC")),
        (entity("Bob Smith", "PERSON"), entity("Rob Smith", "PERSON")),
        (entity("Acme"), entity("Acme Labs")),
    ],
    ids=["paris-parma", "jordan-person-loc", "bob-rob", "acme-acme-labs"],
)
async def test_different_entities_stay_apart(first: dict[str, Any], second: dict[str, Any]) -> None:
    store = InMemoryStore()
    counts = await remember(store, ("m1", first), ("m2", second))
    assert len(await records(store)) == 2
    assert counts == {"new": 2}


async def test_two_spellings_in_one_message_count_once_and_keep_both() -> None:
    store = InMemoryStore()
    stored = await store_entities(
        store,
        "u1",
        [entity("Acme"), entity("ACME Corp."), entity("Bob", "PERSON")],
        message_ids=["m1", "m1", "m1"],
        thread_id="t",
        now=T0,
    )
    assert stored.written == 2
    acme = (await records(store))["ORG:acme"]
    assert (acme.mentions, acme.aliases) == (1, ["ACME Corp."])


async def test_the_same_message_twice_leaves_identical_rows() -> None:
    store = InMemoryStore()
    proposal = [
        entity("Acme"),
        entity("ACME Corp."),
        entity("Ada Lovelace", "PERSON"),
        entity("Ada Lovelase", "PERSON"),
    ]
    first = await store_entities(store, "u1", proposal, message_ids=["m1"] * 4, thread_id="t", now=T0)
    before = await rows(store)
    again = await store_entities(store, "u1", proposal, message_ids=["m1"] * 4, thread_id="t", now="later")
    assert again.written == 0
    assert await rows(store) == before
    assert first.written == 2


async def test_a_record_typed_other_takes_the_first_specific_type_and_keeps_its_key() -> None:
    store = InMemoryStore()
    await remember(store, ("m1", entity("Bob", "OTHER")), ("m2", entity("Bob", "PERSON")))
    assert {k: r.type for k, r in (await records(store)).items()} == {"OTHER:bob": "PERSON"}
    await remember(store, ("m3", entity("Bob", "LOC")))  # a person is not a place
    assert {k: r.type for k, r in (await records(store)).items()} == {"OTHER:bob": "PERSON", "LOC:bob": "LOC"}


# --- bounded reads -----------------------------------------------------------------------------------


async def test_resolution_reads_a_bounded_number_of_records_and_never_lists_them() -> None:
    store = CountingStore()
    many = [entity(f"Acme Branch {n:03d}") for n in range(CANDIDATE_LIMIT * 3)]
    await store_entities(
        store, "u1", many, message_ids=[f"m{n}" for n in range(len(many))], thread_id="t", now=T0
    )
    store.reset()
    found = await resolve_entity(store, "u1", EntityCandidate(type="ORG", value="Acme Branch 999"))
    assert found.how == "new"
    reads = [op for op in store.ops(GetOp) if op.namespace == entity_namespace("u1")]
    assert 0 < len(reads) <= CANDIDATE_LIMIT + 1
    assert not store.ops(SearchOp)


# --- semantic ----------------------------------------------------------------------------------------


def semantic_store() -> CountingStore:
    return CountingStore(index={"dims": 64, "embed": lambda texts: [embed(t) for t in texts]})


async def test_semantic_match_finds_a_neighbour_that_shares_no_word() -> None:
    store = semantic_store()
    options = {"semantic": True, "semantic_threshold": 0.7}
    counts = await remember(
        store, ("m1", entity("Lovelace", "PERSON")), ("m2", entity("Lovelase", "PERSON")), **options
    )
    [record] = (await records(store)).values()
    assert (record.value, record.aliases) == ("Lovelace", ["Lovelase"])
    assert counts == {"new": 1, "semantic": 1}


async def test_semantic_match_respects_its_threshold_and_types() -> None:
    store = semantic_store()
    options = {"semantic": True, "semantic_threshold": 0.7}
    counts = await remember(
        store,
        ("m1", entity("Paris", "LOC")),
        ("m2", entity("Parma", "LOC")),  # cosine 0.4
        ("m3", entity("Lovelace", "PERSON")),
        ("m4", entity("Lovelase", "LOC")),  # close, but a place is not a person
        **options,
    )
    assert len(await records(store)) == 4
    assert counts == {"new": 4}


async def test_without_semantic_the_store_is_never_searched() -> None:
    store = semantic_store()
    counts = await remember(store, ("m1", entity("Lovelace", "PERSON")), ("m2", entity("Lovelase", "PERSON")))
    assert counts == {"new": 2}
    assert not store.ops(SearchOp)
