"""Profile, word index and load_memory on the real AsyncPostgresStore (one profile row, in place)."""

from __future__ import annotations

from langchain_core.messages import HumanMessage
from langgraph.runtime import Runtime

from checkpoint.persistence import Persistence
from nodes.entity_index import entity_keys_for, index_entity, unindex_entity
from nodes.load_memory import RECENT, make_load_memory
from nodes.memory import EntityRecord, entity_key
from nodes.namespaces import entity_index_namespace, entity_namespace, profile_namespace
from nodes.profile import FactStatement, ProfileUpdate, load_profile, update_profile
from nodes.prompts import PROFILE_HEADER
from nodes.state import Context
from tests.integration.support import rows

T0 = "2026-01-01T00:00:00+00:00"
T1 = "2026-11-21T00:00:00+00:00"


def prefix(namespace: tuple[str, ...]) -> str:
    return ".".join(namespace)


def lives_in(city: str) -> ProfileUpdate:
    return ProfileUpdate(facts=[FactStatement(attribute="lives_in", value=city)])


async def remember(persistence: Persistence, *values: str, mentions: int = 1) -> None:
    store = persistence.store
    for value in values:
        entity = EntityRecord(type="ORG", value=value, first_seen=T0, last_seen=T0, mentions=mentions)
        key = entity_key(entity.type, entity.value)
        await store.aput(entity_namespace("u1"), key, entity.model_dump(), index=False)
        await index_entity(store, "u1", key, [entity.value])


async def test_the_profile_is_one_row_updated_in_place_with_its_history(
    persistence: Persistence, database_url: str
) -> None:
    store = persistence.store
    assert await update_profile(store, "u1", lives_in("Paris"), message_id="m1", now=T0)
    assert not await update_profile(store, "u1", lives_in("Paris"), message_id="m1", now=T1)  # a re-run
    assert await update_profile(
        store, "u1", ProfileUpdate(name="Ada", facts=lives_in("Berlin").facts), message_id="m2", now=T1
    )
    query = "SELECT key, value FROM store WHERE prefix = %s"
    [(key, value)] = rows(database_url, query, (prefix(profile_namespace("u1")),))
    assert key == "profile"
    assert value["name"] == "Ada"
    assert [(v["value"], v["valid_to"]) for v in value["facts"]["lives_in"]] == [
        ("Paris", T1),
        ("Berlin", None),
    ]
    profile = await load_profile(store, "u1")
    assert profile is not None and profile.current_facts() == {"lives_in": "Berlin"}
    assert await load_profile(store, "u2") is None


async def test_the_word_index_round_trips_on_postgres(persistence: Persistence, database_url: str) -> None:
    store = persistence.store
    await index_entity(store, "u1", "ORG:bank_of_america", ["Bank of America"])
    await index_entity(store, "u1", "ORG:river_bank", ["River Bank"])
    assert (await entity_keys_for(store, "u1", ["bank", "america"]))[0] == "ORG:bank_of_america"
    await unindex_entity(store, "u1", "ORG:bank_of_america", ["Bank of America"])
    assert await entity_keys_for(store, "u1", ["bank", "america"]) == ["ORG:river_bank"]
    words = rows(
        database_url,
        "SELECT key FROM store WHERE prefix = %s ORDER BY key",
        (prefix(entity_index_namespace("u1")),),
    )
    assert [w for (w,) in words] == ["bank", "river"]


async def test_load_memory_on_postgres_finds_the_named_and_the_recent_entities(
    persistence: Persistence,
) -> None:
    store = persistence.store
    assert await update_profile(store, "u1", ProfileUpdate(name="Ada"), message_id="p1", now=T0)
    await remember(persistence, "Acme")
    await remember(persistence, *(f"Filler {n:03d}" for n in range(RECENT + 30)), mentions=5)
    await remember(persistence, "Zeta Labs")  # updated last: the newest of the recent window
    update = await make_load_memory(memory_tokens=400)(
        {"messages": [HumanMessage("how is acme doing?", id="h1")]},
        runtime=Runtime(context=Context(user_id="u1"), store=store),
    )
    assert update["memory_context"].startswith(f"{PROFILE_HEADER}\n- name: Ada")
    assert update["memory_keys"][0] == "Acme"
    assert "Zeta Labs" in update["memory_keys"]  # recent, though named nowhere
    why = {entry["value"]: entry["why"] for entry in update["memory_trace"]}
    assert why["Acme"] == ["name matches: acme"]
    assert why["Zeta Labs"] == ["recent"]
    assert "Filler 000" not in update["memory_keys"]  # the oldest are out of the recent window
