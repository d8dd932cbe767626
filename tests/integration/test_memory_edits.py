"""Editing memory by hand through the Python API (add/edit an entity, set/unset a fact) on real Postgres:
the same validation, merge, word index and fact history as extraction, and every refusal writes nothing."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from langchain_core.messages import HumanMessage
from langgraph.runtime import Runtime

from graphs.api import Convomem, open_convomem
from graphs.settings import Settings
from nodes.entity_index import entity_keys_for
from nodes.errors import InvalidInput
from nodes.load_memory import make_load_memory
from nodes.memory import EntityRecord
from nodes.namespaces import entity_index_namespace, entity_namespace, profile_namespace
from nodes.state import Context
from tests.fake_openai import EMBEDDING_MODEL, FakeOpenAIServer
from tests.integration.support import finish, rows

USER = "ada"
START = datetime(2026, 3, 1, 9, 0, tzinfo=UTC)


def moment(tick: int) -> str:
    return (START + timedelta(minutes=tick)).isoformat()


@pytest.fixture
def app_at(app: Convomem) -> Convomem:
    """The API with a clock that moves one minute per reading: moment(0), moment(1), ..."""
    ticks: Iterator[int] = iter(range(10_000))
    app.clock = lambda: START + timedelta(minutes=next(ticks))
    return app


def store_rows(database_url: str, namespace: tuple[str, ...]) -> dict[str, Any]:
    found = rows(database_url, "SELECT key, value FROM store WHERE prefix = %s", (".".join(namespace),))
    return {key: value for key, value in found}


def memory_rows(database_url: str) -> list[tuple[Any, ...]]:
    """Every memory row of the user (entities, word index, profile), to show a refusal wrote nothing."""
    query = "SELECT prefix, key, value FROM store WHERE prefix LIKE %s ORDER BY prefix, key"
    return rows(database_url, query, ("%" + USER + "%",))


async def loaded(app: Convomem, text: str) -> dict[str, Any]:
    """What load_memory gives the model for a message of USER's."""
    return await make_load_memory(memory_tokens=400)(
        {"messages": [HumanMessage(text, id="h1")]},
        runtime=Runtime(context=Context(user_id=USER), store=app.persistence.store),
    )


async def memory_keys(app: Convomem, text: str) -> list[str]:
    return list((await loaded(app, text))["memory_keys"])


# ------------------------------------------------------------------------------------------ add_entity


async def test_an_added_entity_is_stored_indexed_and_found_by_load_memory(
    app_at: Convomem, database_url: str
) -> None:
    record = await app_at.add_entity("org", " Acme   Corp ", context="the user's employer", user_id=USER)
    assert record == EntityRecord(
        type="ORG",
        value="Acme Corp",
        contexts=["the user's employer"],
        confidence=1.0,
        first_seen=moment(0),
        last_seen=moment(0),
        mentions=1,
        threads=[],
        source_message_ids=[f"manual:{moment(0)}"],
    )
    assert set(store_rows(database_url, entity_namespace(USER))) == {"ORG:acme"}
    assert await entity_keys_for(app_at.persistence.store, USER, ["acme"]) == ["ORG:acme"]
    assert (await app_at.entity("acme corporation", USER)).record == record
    assert "Acme Corp" in await memory_keys(app_at, "how is acme doing these days?")
    assert [r.value for r in await app_at.entities(USER, entity_type="ORG")] == ["Acme Corp"]


async def test_adding_a_known_entity_merges_like_extraction(app_at: Convomem, database_url: str) -> None:
    await app_at.add_entity("ORG", "Acme Corp", context="employer", user_id=USER)
    merged = await app_at.add_entity("ORG", "ACME Inc.", context="pays the flat", user_id=USER)
    assert (merged.value, merged.aliases, merged.mentions) == ("Acme Corp", ["ACME Inc."], 2)
    assert merged.contexts == ["employer", "pays the flat"]
    assert (merged.first_seen, merged.last_seen) == (moment(0), moment(1))
    assert merged.source_message_ids == [f"manual:{moment(0)}", f"manual:{moment(1)}"]
    assert list(store_rows(database_url, entity_namespace(USER))) == ["ORG:acme"]  # one record

    other = await app_at.add_entity("LOC", "Jordan", user_id=USER)  # another type is another entity
    person = await app_at.add_entity("PERSON", "Jordan", user_id=USER)
    assert (other.type, person.type, other.mentions, person.mentions) == ("LOC", "PERSON", 1, 1)


async def test_extraction_later_counts_a_mention_of_the_entity_added_by_hand(app_at: Convomem) -> None:
    await app_at.add_entity("ORG", "Acme Corp", user_id=USER)
    await finish(app_at.chat("t1", "I work at Acme Corp. with Bob.", user_id=USER))
    [acme] = [r for r in await app_at.entities(USER) if r.type == "ORG"]
    assert (acme.value, acme.mentions, acme.threads) == ("Acme Corp", 2, ["t1"])
    assert acme.source_message_ids[0] == f"manual:{moment(0)}"


@pytest.mark.parametrize(
    ("entity_type", "value", "context", "words"),
    [
        ("ORGANISATION", "Acme", "", "Unknown entity type 'ORGANISATION'"),
        ("ORG", "   ", "", "empty entity value"),
        ("ORG", "}, {", "", "no letters or digits"),
        ("ORG", "N/A", "", "a placeholder"),
        ("ORG", "x" * 121, "", "at most 120 characters"),
        ("ORG", "Acme", "y" * 241, "at most 240 characters"),
    ],
)
async def test_add_refuses_what_extraction_would_not_keep(
    app_at: Convomem, database_url: str, entity_type: str, value: str, context: str, words: str
) -> None:
    with pytest.raises(InvalidInput, match=words) as refused:
        await app_at.add_entity(entity_type, value, context=context, user_id=USER)
    assert "\n" not in str(refused.value)
    assert memory_rows(database_url) == []


async def test_add_refuses_a_bad_user_id(app_at: Convomem, database_url: str) -> None:
    with pytest.raises(InvalidInput):
        await app_at.add_entity("ORG", "Acme", user_id="no such/user")
    assert rows(database_url, "SELECT count(*) FROM store") == [(0,)]


# ----------------------------------------------------------------------------------------- edit_entity


async def test_a_rename_moves_the_key_keeps_the_counts_and_the_old_name_is_an_alias(
    app_at: Convomem, database_url: str
) -> None:
    await finish(app_at.chat("t1", "I work at Acme Corp. with Bob.", user_id=USER))
    await app_at.add_entity("ORG", "Acme Corp", context="employer", user_id=USER)
    before = (await app_at.entity("Acme", USER)).record
    assert before.mentions == 2

    renamed = await app_at.edit_entity("acme", value="Globex", user_id=USER)
    assert (renamed.value, renamed.type) == ("Globex", "ORG")
    assert renamed.aliases == [*before.aliases, before.value]  # the old name is an alias
    kept = ("mentions", "first_seen", "last_seen", "threads", "source_message_ids", "contexts")
    assert {f: getattr(renamed, f) for f in kept} == {f: getattr(before, f) for f in kept}

    entities = store_rows(database_url, entity_namespace(USER))
    assert "ORG:acme" not in entities and entities["ORG:globex"]["value"] == "Globex"
    index = store_rows(database_url, entity_index_namespace(USER))
    assert all("ORG:acme" not in doc["keys"] for doc in index.values()), index
    assert "ORG:globex" in index["globex"]["keys"] and "ORG:globex" in index["acme"]["keys"]

    assert (await app_at.entity("Globex", USER)).record == renamed
    assert (await app_at.entity("Acme Corp", USER)).record == renamed  # the old name is an alias
    assert "Globex" in await memory_keys(app_at, "any news from globex?")


async def test_type_and_contexts_are_edited_and_a_former_alias_can_become_the_name(
    app_at: Convomem, database_url: str
) -> None:
    await app_at.add_entity("OTHER", "Kubernetes", context="at work", user_id=USER)
    typo = await app_at.add_entity("OTHER", "Kubernets", user_id=USER)  # a close spelling: an alias
    assert (typo.value, typo.aliases) == ("Kubernetes", ["Kubernets"])
    edited = await app_at.edit_entity(
        "kubernetes", entity_type="tech", contexts=["runs the cluster", "  ", "on call"], user_id=USER
    )
    assert (edited.type, edited.contexts) == ("TECH", ["runs the cluster", "on call"])
    assert list(store_rows(database_url, entity_namespace(USER))) == ["TECH:kubernetes"]

    swapped = await app_at.edit_entity("Kubernetes", value="Kubernets", contexts=[], user_id=USER)
    assert (swapped.value, swapped.aliases, swapped.contexts) == ("Kubernets", ["Kubernetes"], [])
    assert list(store_rows(database_url, entity_namespace(USER))) == ["TECH:kubernets"]
    assert (await app_at.entity("kubernetes", USER)).record == swapped


async def test_a_case_only_rename_keeps_the_key_and_adds_no_alias(
    app_at: Convomem, database_url: str
) -> None:
    await app_at.add_entity("ORG", "acme", user_id=USER)
    edited = await app_at.edit_entity("acme", value="ACME", user_id=USER)
    assert (edited.value, edited.aliases) == ("ACME", [])
    assert list(store_rows(database_url, entity_namespace(USER))) == ["ORG:acme"]


@pytest.mark.parametrize(
    ("name", "changes", "words"),
    [
        ("Zanzibar", {"value": "Z"}, "Nothing remembered as 'Zanzibar' for 'ada'"),
        ("Acme", {}, "Nothing to change"),
        ("Acme", {"value": "Globex Corporation"}, "ORG 'Globex Corporation' is already remembered"),
        ("Acme", {"value": "Initech"}, "ORG 'Initech' is already remembered"),  # Globex's alias
        ("Acme", {"entity_type": "PERSONA"}, "Unknown entity type 'PERSONA'"),
        ("Acme", {"value": "None"}, "a placeholder"),
        ("Acme", {"contexts": [f"note {n}" for n in range(6)]}, "at most 5 contexts"),
        ("Acme", {"contexts": ["z" * 241]}, "at most 240 characters"),
        (" ", {"value": "Z"}, "Give an entity name"),
    ],
)
async def test_edit_refusals_are_one_line_and_change_nothing(
    app_at: Convomem, database_url: str, name: str, changes: dict[str, Any], words: str
) -> None:
    await app_at.add_entity("ORG", "Acme", user_id=USER)
    await app_at.add_entity("ORG", "Globex", user_id=USER)
    await app_at.add_entity("ORG", "Initech", user_id=USER)
    await app_at.edit_entity("Initech", value="Globex Ventures", user_id=USER)  # Initech: now an alias
    before = memory_rows(database_url)
    with pytest.raises(InvalidInput, match=words) as refused:
        await app_at.edit_entity(name, user_id=USER, **changes)
    assert "\n" not in str(refused.value)
    assert memory_rows(database_url) == before


async def test_the_unknown_entity_words_are_forget_entitys(app_at: Convomem) -> None:
    with pytest.raises(InvalidInput) as forgetting:
        await app_at.forget_entity("Zanzibar", USER)
    with pytest.raises(InvalidInput) as editing:
        await app_at.edit_entity("Zanzibar", value="Zanzibar City", user_id=USER)
    assert str(editing.value) == str(forgetting.value)


# ---------------------------------------------------------------------------------- set/unset facts


async def test_setting_facts_keeps_their_history_like_extraction(app_at: Convomem, database_url: str) -> None:
    first = await app_at.set_fact("Lives in", "Paris", user_id=USER)
    assert first.current_facts() == {"lives_in": "Paris"}
    moved = await app_at.set_fact("lives-in", "  Berlin ", user_id=USER)
    versions = [(v.value, v.valid_from, v.valid_to) for v in moved.facts["lives_in"]]
    assert versions == [("Paris", moment(0), moment(1)), ("Berlin", moment(1), None)]
    assert moved.source_message_ids == [f"manual:{moment(0)}", f"manual:{moment(1)}"]

    same = await app_at.set_fact("lives_in", "berlin", user_id=USER)  # the value that holds: no-op
    assert same == moved
    [(stored,)] = rows(
        database_url, "SELECT value FROM store WHERE prefix = %s", (".".join(profile_namespace(USER)),)
    )
    assert stored == moved.model_dump()


async def test_unset_closes_the_fact_keeps_its_history_and_a_new_value_opens_again(app_at: Convomem) -> None:
    await app_at.set_fact("lives_in", "Paris", user_id=USER)
    await app_at.set_fact("employer", "Acme", user_id=USER)
    ended = await app_at.unset_fact("Lives in", user_id=USER)
    assert ended.current_facts() == {"employer": "Acme"}
    assert [(v.value, v.valid_to) for v in ended.facts["lives_in"]] == [("Paris", moment(2))]
    assert "- lives_in: no longer Paris" in (await loaded(app_at, "hi"))["memory_context"]
    with pytest.raises(InvalidInput, match="No fact 'lives_in' holds now for 'ada'"):
        await app_at.unset_fact("lives_in", user_id=USER)

    again = await app_at.set_fact("lives_in", "Lisbon", user_id=USER)
    history = [(v.value, v.valid_to) for v in again.facts["lives_in"]]
    assert history == [("Paris", moment(2)), ("Lisbon", None)]


@pytest.mark.parametrize(
    ("attribute", "value", "words"),
    [
        ("  ", "Paris", "attribute in plain words"),
        ("!!", "Paris", "attribute in plain words"),
        ("lives_in", "   ", "value in plain words"),
        ("lives_in", "N/A", "value in plain words"),
        ("lives_in", "p" * 81, "a value of at most 80"),
        ("a" * 41, "Paris", "an attribute of at most 40"),
    ],
)
async def test_set_fact_refusals_write_nothing(
    app_at: Convomem, database_url: str, attribute: str, value: str, words: str
) -> None:
    with pytest.raises(InvalidInput, match=words):
        await app_at.set_fact(attribute, value, user_id=USER)
    assert memory_rows(database_url) == []


async def test_unset_of_an_unknown_fact_or_with_no_profile_is_refused(
    app_at: Convomem, database_url: str
) -> None:
    with pytest.raises(InvalidInput, match="No fact 'lives_in'"):
        await app_at.unset_fact("lives in", user_id=USER)
    assert memory_rows(database_url) == []
    await app_at.set_fact("employer", "Acme", user_id=USER)
    before = memory_rows(database_url)
    with pytest.raises(InvalidInput, match="No fact 'lives_in'"):
        await app_at.unset_fact("lives_in", user_id=USER)
    with pytest.raises(InvalidInput, match="plain words"):
        await app_at.unset_fact("?!", user_id=USER)
    assert memory_rows(database_url) == before


# ------------------------------------------------------------------------------------ semantic memory


async def test_with_semantic_memory_edits_are_embedded_under_their_key(
    settings: Settings, fake_model: FakeOpenAIServer, database_url: str
) -> None:
    semantic = settings.model_copy(update={"embedding_model": EMBEDDING_MODEL, "embedding_dims": 64})
    vectors = "SELECT DISTINCT key FROM store_vectors WHERE prefix = %s ORDER BY key"
    prefix = (".".join(entity_namespace(USER)),)
    async with open_convomem(semantic) as cm:
        await cm.add_entity("LOC", "Kristiansand", user_id=USER)
        assert rows(database_url, vectors, prefix) == [("LOC:kristiansand",)]
        await cm.edit_entity("Kristiansand", value="Kristiansand Harbour", user_id=USER)
        assert rows(database_url, vectors, prefix) == [("LOC:kristiansand_harbour",)]
    assert fake_model.requests_of("embed")
