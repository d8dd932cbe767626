"""profile: the lenient extraction schema, the temporal merge rule, the store round trip, the prompt lines."""

from __future__ import annotations

import itertools
import json
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st
from langchain_core.utils.function_calling import convert_to_openai_tool
from langgraph.store.memory import InMemoryStore

from nodes.namespaces import profile_namespace
from nodes.profile import (
    KEPT_FACT_VERSIONS,
    KEPT_LIST_ITEMS,
    KEPT_SOURCE_IDS,
    MAX_FACTS,
    PROFILE_KEY,
    FactStatement,
    ProfileUpdate,
    UserProfile,
    format_profile,
    load_profile,
    merge_profile,
    text_tokens,
    update_profile,
)
from nodes.prompts import PROFILE_HEADER

T0 = "2026-01-01T00:00:00+00:00"
T1 = "2026-03-01T00:00:00+00:00"
T2 = "2026-11-21T00:00:00+00:00"


def fact(attribute: str, value: str) -> ProfileUpdate:
    return ProfileUpdate(facts=[FactStatement(attribute=attribute, value=value)])


def merged(*steps: tuple[ProfileUpdate, str, str]) -> UserProfile:
    """Apply (update, message_id, now) steps in order; each must change something."""
    profile: UserProfile | None = None
    for update, message_id, now in steps:
        profile = merge_profile(profile, update, message_id=message_id, now=now)
        assert profile is not None
    assert profile is not None
    return profile


# --- the extraction schema ------------------------------------------------------------------------------


def _bounded(schema: Any) -> None:
    """Every string and array in the tool schema has a bound a grammar-constrained model can reach."""
    if isinstance(schema, dict):
        if schema.get("type") == "string":
            assert "maxLength" in schema, schema
        if schema.get("type") == "array":
            assert "maxItems" in schema, schema
        for value in schema.values():
            _bounded(value)
    elif isinstance(schema, list):
        for value in schema:
            _bounded(value)


def test_the_tool_schema_bounds_every_string_and_list_and_stays_short() -> None:
    tool = convert_to_openai_tool(ProfileUpdate)
    _bounded(tool["function"]["parameters"])
    assert len(json.dumps(tool)) < 1500
    assert tool["function"]["parameters"].get("required", []) == []  # the empty update is valid


def test_update_validation_is_lenient_with_what_small_models_write() -> None:
    update = ProfileUpdate.model_validate(
        {
            "name": "  Ada \n Lovelace ",
            "language": "   ",
            "communication_style": None,
            "interests": "chess",
            "preferred_topics": ["Go", "go", " ", "x" * 90, "a", "b", "c", "d"],
            "facts": [
                {"attribute": "Lives In", "value": " Paris "},
                {"attribute": " ", "value": "nowhere"},
                {"value": "no attribute"},
                "not a fact",
            ],
        }
    )
    assert update.name == "Ada Lovelace"
    assert update.language is None
    assert update.interests == ["chess"]
    assert update.preferred_topics == ["Go", "x" * 40, "a", "b", "c"]
    assert update.facts == [FactStatement(attribute="lives_in", value="Paris")]
    assert ProfileUpdate.model_validate({}) == ProfileUpdate()


@pytest.mark.parametrize("spelling", ["lives in", "Lives-In", "LIVES_IN", " lives  in! "])
def test_fact_attributes_are_one_snake_case_name(spelling: str) -> None:
    assert FactStatement(attribute=spelling, value="Paris").attribute == "lives_in"


# --- merge_profile ----------------------------------------------------------------------------------


def test_a_changed_fact_keeps_its_history() -> None:
    profile = merged((fact("lives_in", "Paris"), "m1", T0), (fact("lives in", "Berlin"), "m2", T1))
    assert profile.current_facts() == {"lives_in": "Berlin"}
    paris, berlin = profile.facts["lives_in"]
    assert (paris.value, paris.valid_from, paris.valid_to, paris.source_message_id) == ("Paris", T0, T1, "m1")
    assert (berlin.value, berlin.valid_from, berlin.valid_to, berlin.source_message_id) == (
        "Berlin",
        T1,
        None,
        "m2",
    )
    assert [v.value for v in profile.past_facts()["lives_in"]] == ["Paris"]


def test_restating_the_current_value_changes_nothing() -> None:
    profile = merged((fact("lives_in", "Berlin"), "m1", T0))
    assert merge_profile(profile, fact("lives_in", "berlin"), message_id="m2", now=T1) is None


def test_restating_a_past_value_makes_it_current_again() -> None:
    profile = merged(
        (fact("lives_in", "Paris"), "m1", T0),
        (fact("lives_in", "Berlin"), "m2", T1),
        (fact("lives_in", "Paris"), "m3", T2),
    )
    assert profile.current_facts() == {"lives_in": "Paris"}
    assert [(v.value, v.valid_to) for v in profile.facts["lives_in"]] == [
        ("Paris", T1),
        ("Berlin", T2),
        ("Paris", None),
    ]


def test_the_same_message_applies_once() -> None:
    profile = merged((ProfileUpdate(name="Ada", facts=[FactStatement(attribute="a", value="1")]), "m1", T0))
    assert merge_profile(profile, fact("a", "2"), message_id="m1", now=T1) is None
    assert profile.source_message_ids == ["m1"]
    assert profile.updated_at == T0


def test_nothing_new_is_none() -> None:
    assert merge_profile(None, ProfileUpdate(), message_id="m1", now=T0) is None
    profile = merged((ProfileUpdate(name="Ada", language="English", interests=["Chess"]), "m1", T0))
    same = ProfileUpdate(name="ada", language="english", interests=["chess"])
    assert merge_profile(profile, same, message_id="m2", now=T1) is None


def test_scalars_take_the_newest_statement_and_lists_grow_without_repeats() -> None:
    profile = merged(
        (ProfileUpdate(name="Ada", interests=["Chess", "Go"], preferred_topics=["math"]), "m1", T0),
        (ProfileUpdate(name="Ada Lovelace", interests=["go", "Tea"], communication_style="terse"), "m2", T1),
    )
    assert (profile.name, profile.communication_style) == ("Ada Lovelace", "terse")
    assert profile.interests == ["Chess", "Go", "Tea"]
    assert profile.preferred_topics == ["math"]
    assert (profile.updated_at, profile.source_message_ids) == (T1, ["m1", "m2"])


def test_one_message_stating_an_attribute_twice_keeps_the_last_value() -> None:
    update = ProfileUpdate(
        facts=[FactStatement(attribute="city", value="Paris"), FactStatement(attribute="city", value="Rome")]
    )
    profile = merged((update, "m1", T0))
    assert [v.value for v in profile.facts["city"]] == ["Rome"]


def test_everything_stays_bounded() -> None:
    profile: UserProfile | None = None
    for n in range(120):
        update = ProfileUpdate(
            interests=[f"interest {n}"],
            facts=[
                FactStatement(attribute="city", value=f"c{n}"),
                FactStatement(attribute=f"f{n}", value="v"),
            ],
        )
        profile = merge_profile(profile, update, message_id=f"m{n}", now=f"2026-01-01T00:00:{n:03d}")
        assert profile is not None
    assert profile is not None
    assert len(profile.interests) == KEPT_LIST_ITEMS
    assert profile.interests[-1] == "interest 119"
    assert len(profile.facts) == MAX_FACTS
    assert "city" in profile.facts  # changed most recently, so kept
    assert len(profile.facts["city"]) == KEPT_FACT_VERSIONS
    assert profile.current_facts()["city"] == "c119"
    assert len(profile.source_message_ids) == KEPT_SOURCE_IDS


statements = st.lists(
    st.tuples(st.sampled_from(["lives_in", "works_at", "pet"]), st.sampled_from(["A", "B", "C"])),
    max_size=12,
)


@given(statements)
def test_merge_invariants(steps: list[tuple[str, str]]) -> None:
    """Whatever the sequence: one current value per attribute, the last one stated; versions chain in
    time; re-applying any message that changed something changes nothing. (A message that changed
    nothing is not recorded; the extraction marker per message id guards its re-run.)"""
    profile: UserProfile | None = None
    last: dict[str, str] = {}
    for n, (attribute, value) in enumerate(steps):
        now = f"2026-01-01T00:00:{n:02d}"
        profile = merge_profile(profile, fact(attribute, value), message_id=f"m{n}", now=now) or profile
        last[attribute] = value
    if profile is None:
        assert not steps
        return
    assert profile.current_facts() == last
    for versions in profile.facts.values():
        assert [v.valid_to is None for v in versions] == [False] * (len(versions) - 1) + [True]
        for older, newer in itertools.pairwise(versions):
            assert older.valid_to == newer.valid_from
            assert older.value != newer.value
    for n, (attribute, value) in enumerate(steps):
        if f"m{n}" in profile.source_message_ids:
            assert merge_profile(profile, fact(attribute, value), message_id=f"m{n}", now="later") is None


# --- store round trip -------------------------------------------------------------------------------


async def test_update_profile_writes_one_document_only_when_something_changes() -> None:
    store = InMemoryStore()
    assert await load_profile(store, "u1") is None
    assert await update_profile(store, "u1", fact("lives_in", "Paris"), message_id="m1", now=T0)
    assert not await update_profile(store, "u1", fact("lives_in", "Paris"), message_id="m2", now=T1)
    assert await update_profile(store, "u1", fact("lives_in", "Berlin"), message_id="m3", now=T2)
    items = await store.asearch(profile_namespace("u1"))
    assert [item.key for item in items] == [PROFILE_KEY]
    profile = await load_profile(store, "u1")
    assert profile is not None and profile.current_facts() == {"lives_in": "Berlin"}
    assert await load_profile(store, "u2") is None


async def test_an_unreadable_profile_is_treated_as_absent_and_replaced() -> None:
    store = InMemoryStore()
    await store.aput(profile_namespace("u1"), PROFILE_KEY, {"facts": "garbage"}, index=False)
    assert await load_profile(store, "u1") is None
    assert await update_profile(store, "u1", ProfileUpdate(name="Ada"), message_id="m1", now=T0)
    assert (await load_profile(store, "u1")) == UserProfile(
        name="Ada", updated_at=T0, source_message_ids=["m1"]
    )


# --- prompt lines -----------------------------------------------------------------------------------


def test_format_profile_lists_identity_then_current_and_past_facts() -> None:
    profile = merged(
        (ProfileUpdate(name="Ada", language="English", interests=["chess", "tea"]), "m1", T0),
        (fact("lives_in", "Paris"), "m2", T0),
        (fact("lives_in", "Berlin"), "m3", T2),
        (fact("works_at", "Acme"), "m4", T1),
    )
    text = format_profile(profile, 400)
    assert text.splitlines() == [
        PROFILE_HEADER,
        "- name: Ada",
        "- language: English",
        "- interests: chess, tea",
        "- lives_in: Berlin (since 2026-11-21; before: Paris)",
        "- works_at: Acme (since 2026-03-01)",
    ]


@pytest.mark.parametrize("max_tokens", [0, 5, 12, 20, 40])
def test_format_profile_fits_its_budget_identity_first(max_tokens: int) -> None:
    profile = merged(
        (ProfileUpdate(name="Ada", interests=[f"topic {n}" for n in range(5)]), "m1", T0),
        *((fact(f"fact_{n}", "x" * 40), f"f{n}", T1) for n in range(5)),
    )
    text = format_profile(profile, max_tokens)
    assert text_tokens(text) <= max_tokens
    lines = text.splitlines()
    assert lines[:2] in ([], [PROFILE_HEADER, "- name: Ada"])
