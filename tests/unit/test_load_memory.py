"""load_memory: profile first, the entities that matter among many, within budget, with a trace of why."""

from __future__ import annotations

import logging
import re
from collections.abc import Sequence
from typing import Any

import pytest
from langchain_core.messages import AnyMessage, HumanMessage
from langgraph.runtime import Runtime
from langgraph.store.base import GetOp, IndexConfig, SearchOp
from langgraph.store.memory import InMemoryStore

from nodes.config import GraphConfig
from nodes.entity_index import index_entity
from nodes.load_memory import PROFILE_SHARE, RECENT, make_load_memory
from nodes.memory import EntityRecord, entity_key
from nodes.namespaces import entity_namespace
from nodes.profile import FactStatement, ProfileUpdate, text_tokens, update_profile
from nodes.prompts import MEMORY_HEADER, PROFILE_HEADER
from nodes.respond import build_prompt
from nodes.state import Context, State
from nodes.tokens import count_tokens
from tests.support.fakes import CountingStore

T0 = "2026-01-01T00:00:00+00:00"
T1 = "2026-06-01T00:00:00+00:00"


def record(
    value: str, *, type: str = "ORG", mentions: int = 1, context: str = "", seen: str = T0
) -> EntityRecord:
    return EntityRecord(
        type=type,
        value=value,
        first_seen=T0,
        last_seen=seen,
        mentions=mentions,
        contexts=[context] if context else [],
    )


async def remember(store: InMemoryStore, *records: EntityRecord, user_id: str = "u1") -> None:
    """Store and index records as extraction does (vectors too when the store has an index)."""
    for entity in records:
        key = entity_key(entity.type, entity.value)
        await store.aput(entity_namespace(user_id), key, entity.model_dump(), index=["value", "aliases[*]"])
        await index_entity(store, user_id, key, [entity.value, *entity.aliases])


async def with_profile(store: InMemoryStore, user_id: str = "u1", **update: Any) -> None:
    defaults: dict[str, Any] = {
        "name": "Ada",
        "language": "English",
        "facts": [FactStatement(attribute="lives_in", value="Berlin")],
    }
    assert await update_profile(
        store, user_id, ProfileUpdate(**{**defaults, **update}), message_id="p1", now=T1
    )


def turn(text: str) -> State:
    messages: list[AnyMessage] = [HumanMessage("earlier", id="h0"), HumanMessage(text, id="h1")]
    return {"messages": messages}


async def load(
    store: InMemoryStore | None, text: str, *, semantic: bool = False, memory_tokens: int = 400
) -> dict[str, Any]:
    """load_memory for user u1 with this budget (the configured default: 400)."""
    node = make_load_memory(memory_tokens=memory_tokens, semantic=semantic)
    return await node(turn(text), runtime=Runtime(context=Context(user_id="u1"), store=store))


def fillers(count: int) -> list[EntityRecord]:
    return [record(f"Filler {n:04d}", mentions=5) for n in range(count)]


# --- the profile ------------------------------------------------------------------------------------


async def test_the_profile_comes_first_and_is_traced() -> None:
    store = InMemoryStore()
    await with_profile(store)
    await remember(store, record("Acme", mentions=3))
    update = await load(store, "How is Acme?")
    profile, entities = update["memory_context"].split("\n\n")
    assert profile.splitlines()[:2] == [PROFILE_HEADER, "- name: Ada"]
    assert "- lives_in: Berlin" in profile
    assert entities.startswith(f"{MEMORY_HEADER}\n- Acme ")
    assert update["memory_keys"] == ["Acme"]
    assert update["memory_trace"][0] == {"key": "profile", "value": "Ada", "why": ["profile"]}


async def test_the_profile_is_there_whatever_the_message_and_the_entity_count() -> None:
    store = InMemoryStore()
    await with_profile(store)
    await remember(store, *fillers(300))
    update = await load(store, "unrelated words", memory_tokens=60)
    assert update["memory_context"].startswith(f"{PROFILE_HEADER}\n- name: Ada")
    assert update["memory_trace"][0]["why"] == ["profile"]


async def test_a_large_profile_keeps_to_its_share_and_entities_get_the_rest() -> None:
    store = InMemoryStore()
    facts = [FactStatement(attribute=f"fact_{n}", value="x" * 70) for n in range(5)]
    await with_profile(store, interests=[f"interest {n}" for n in range(5)], facts=facts)
    await remember(store, record("Acme"))
    update = await load(store, "Acme?", memory_tokens=80)
    profile, _entities = update["memory_context"].split("\n\n")
    assert text_tokens(profile) <= 80 // PROFILE_SHARE
    assert update["memory_keys"] == ["Acme"]
    assert text_tokens(update["memory_context"]) <= 80


async def test_without_entities_the_profile_may_use_the_whole_budget() -> None:
    store = InMemoryStore()
    facts = [FactStatement(attribute=f"fact_{n}", value="x" * 70) for n in range(5)]
    await with_profile(store, facts=facts)
    update = await load(store, "hello", memory_tokens=120)
    assert text_tokens(update["memory_context"]) > 120 // PROFILE_SHARE
    assert text_tokens(update["memory_context"]) <= 120
    assert update["memory_keys"] == []


# --- picking entities -------------------------------------------------------------------------------


async def test_the_named_entity_is_found_among_a_thousand() -> None:
    store = InMemoryStore()
    await remember(store, *fillers(500), record("Globex Industries", mentions=1), *fillers(1000)[500:])
    update = await load(store, "Any news from globex?")
    assert update["memory_keys"][0] == "Globex Industries"
    assert update["memory_trace"][0] == {
        "key": "ORG:globex_industries",
        "value": "Globex Industries",
        "why": ["name matches: globex"],
    }


async def test_aliases_and_context_words_count_names_more() -> None:
    store = InMemoryStore()
    robert = record("Robert", type="PERSON", context="plays chess every sunday")
    robert.aliases.append("Bobby")
    await remember(store, *fillers(40), robert, record("Chess Club", context="meets downtown"))
    update = await load(store, "Did bobby win at chess?")
    assert update["memory_keys"][:2] == ["Robert", "Chess Club"]
    why = {entry["value"]: entry["why"] for entry in update["memory_trace"]}
    assert why["Robert"] == ["name matches: bobby", "context matches: chess"]
    assert why["Chess Club"] == ["name matches: chess"]


async def test_store_reads_do_not_grow_with_the_entity_count() -> None:
    reads = []
    for count in (RECENT * 2, 1000):  # both past the recent window: the named one comes from the index
        store = CountingStore()
        await with_profile(store)
        await remember(store, *fillers(count), record("Acme"))
        store.reset()
        update = await load(store, "what about Acme?")
        assert update["memory_keys"][0] == "Acme"
        searches = store.ops(SearchOp)
        assert all(op.limit <= RECENT for op in searches)
        reads.append((len(searches), len(store.ops(GetOp))))
    assert reads[0] == reads[1]


async def test_the_budget_holds_and_every_pick_is_traced() -> None:
    store = InMemoryStore()
    await with_profile(store, interests=["chess", "tea"])
    await remember(store, *(record(f"Company {n}", context="c" * 100, mentions=n) for n in range(60)))
    for budget in (1, 10, 40, 100, 400, 2000):
        update = await load(store, "Company 7 or Company 42?", memory_tokens=budget)
        assert text_tokens(update["memory_context"]) <= budget
        entity_trace = [entry for entry in update["memory_trace"] if entry["key"] != "profile"]
        assert [entry["value"] for entry in entity_trace] == update["memory_keys"]
        assert all(entry["why"] for entry in entity_trace)
        assert all(f"- {value} (" in update["memory_context"] for value in update["memory_keys"])


async def test_the_prompt_stays_under_prompt_tokens_with_profile_and_memory() -> None:
    store = InMemoryStore()
    await with_profile(store, facts=[FactStatement(attribute=f"f{n}", value="y" * 70) for n in range(5)])
    await remember(store, *(record(f"Thing {n}", context="z" * 200) for n in range(50)))
    for prompt_tokens in (300, 600, 3000):
        config = GraphConfig(prompt_tokens=prompt_tokens, memory_tokens=prompt_tokens)
        current = turn("Thing 3?")
        current.update(await load(store, "Thing 3?", memory_tokens=config.memory_tokens))  # type: ignore[typeddict-item]
        prompt = build_prompt(current, config)
        assert count_tokens(prompt) <= prompt_tokens
        assert PROFILE_HEADER in str(prompt[0].content)


async def test_an_unreadable_entity_is_left_out() -> None:
    store = InMemoryStore()
    await store.aput(entity_namespace("u1"), "ORG:broken", {"value": "Broken"}, index=False)
    await index_entity(store, "u1", "ORG:broken", ["Broken"])
    await remember(store, record("Acme"))
    update = await load(store, "Broken Acme")
    assert update["memory_keys"] == ["Acme"]


async def test_a_stale_index_entry_is_ignored() -> None:
    store = InMemoryStore()
    await index_entity(store, "u1", "ORG:gone", ["Gone"])
    assert (await load(store, "gone?"))["memory_keys"] == []


async def test_an_empty_store_or_no_store_gives_empty_memory() -> None:
    expected = {
        "memory_context": "",
        "memory_keys": [],
        "memory_trace": [],
        "user_id": "u1",
        "review_memory": False,
    }
    assert await load(InMemoryStore(), "hello") == expected
    assert await load(None, "hello") == expected
    assert await load(InMemoryStore(), "hello", semantic=True) == expected


async def test_the_selection_is_logged(caplog: pytest.LogCaptureFixture) -> None:
    store = InMemoryStore()
    await remember(store, record("Acme"))
    with caplog.at_level(logging.DEBUG, logger="convomem.memory"):
        await load(store, "Acme?")
    assert any("ORG:acme" in message for message in caplog.messages)


# --- the semantic path ------------------------------------------------------------------------------

SYNONYMS = [{"cat", "kitten", "feline", "whiskers"}, {"car", "vehicle", "automobile", "sedan"}]
DIMS = len(SYNONYMS) + 1


def embed(texts: Sequence[str]) -> list[list[float]]:
    """Deterministic meaning: synonyms share a dimension; every text gets a little of the last one, so
    unrelated texts score low but not zero."""
    vectors = []
    for text in texts:
        vector = [0.0] * (DIMS - 1) + [0.1]
        for word in re.findall(r"\w+", text.casefold()):
            for n, group in enumerate(SYNONYMS):
                vector[n] += word in group
        vectors.append(vector)
    return vectors


VECTORS = IndexConfig(dims=DIMS, embed=embed, fields=["value", "aliases[*]"])


async def test_the_semantic_path_finds_entities_by_meaning() -> None:
    store = InMemoryStore(index=VECTORS)
    await remember(
        store, *fillers(RECENT + 10), record("Whiskers", type="PERSON"), record("Sedan", type="PRODUCT")
    )
    lexical = await load(store, "how is my feline?")
    assert "Whiskers" not in lexical["memory_keys"]
    update = await load(store, "how is my feline?", semantic=True)
    assert update["memory_keys"][0] == "Whiskers"
    [why] = [entry["why"] for entry in update["memory_trace"] if entry["value"] == "Whiskers"]
    assert len(why) == 1 and why[0].startswith("semantic score: ")
    assert "Sedan" not in update["memory_keys"][:1]


async def test_words_still_beat_meaning() -> None:
    store = InMemoryStore(index=VECTORS)
    await remember(store, record("Whiskers", type="PERSON"), record("Kitten Corp"))
    update = await load(store, "kitten news?", semantic=True)
    assert update["memory_keys"][0] == "Kitten Corp"
