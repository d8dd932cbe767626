"""memory: entity keys, candidate validation, tool-argument parsing and the idempotent merge rule."""

from __future__ import annotations

from datetime import datetime

import pytest
from langgraph.store.base import Item
from pydantic import ValidationError

from nodes.load_memory import format_memory, rank_entities
from nodes.memory import (
    KEPT_CONTEXTS,
    MAX_CONTEXT_CHARS,
    MAX_VALUE_CHARS,
    EntityCandidate,
    EntityRecord,
    Extraction,
    entity_key,
    merge_entity,
    normalized_name,
    parse_candidates,
    parse_profile,
    read_record,
    with_alias,
)
from nodes.namespaces import entity_namespace, extracted_namespace
from nodes.prompts import MEMORY_HEADER

T0 = "2026-01-01T00:00:00+00:00"
T1 = "2026-01-02T00:00:00+00:00"
NOW = datetime.fromisoformat(T0)


# --- entity_key ------------------------------------------------------------------------------------


FULLWIDTH_ACME = "\uff21\uff43\uff4d\uff45"  # NFKC folds it to "Acme"


@pytest.mark.parametrize(
    "value",
    ["Acme", "ACME Corp.", "Acme Corporation", "acme inc", "Acme, Inc.", "  Acme   LLC ", FULLWIDTH_ACME],
)
def test_entity_key_normalizes_case_punctuation_and_corporate_suffixes(value: str) -> None:
    assert entity_key("ORG", value) == entity_key("ORG", "Acme") == "ORG:acme"


def test_entity_key_separates_types_and_different_names() -> None:
    assert entity_key("ORG", "Acme") != entity_key("PRODUCT", "Acme")
    assert entity_key("ORG", "Acme") != entity_key("ORG", "Apex")
    assert entity_key("PERSON", "Ada Lovelace") == "PERSON:ada_lovelace"


def test_entity_key_keeps_a_name_that_is_only_a_suffix() -> None:
    assert entity_key("ORG", "Company") == "ORG:company"


def test_entity_key_keeps_symbol_names_apart() -> None:
    keys = {entity_key("TECH", v) for v in ["C", "C++", "C#"]}
    assert len(keys) == 3


@pytest.mark.parametrize(
    ("value", "name"),
    [("ACME Corp.", "acme"), ("Ada  Lovelace", "ada lovelace"), ("Company", "company"), ("C++", "c++")],
)
def test_normalized_name_is_what_the_key_is_made_of(value: str, name: str) -> None:
    assert normalized_name(value) == name
    assert entity_key("ORG", value) == "ORG:" + name.replace(" ", "_")


def test_namespaces_are_per_user_and_distinct() -> None:
    assert entity_namespace("u1") != entity_namespace("u2")
    assert entity_namespace("u1") != extracted_namespace("u1")
    assert "u1" in entity_namespace("u1")


# --- EntityCandidate -------------------------------------------------------------------------------


def test_candidate_normalizes_type_value_and_context() -> None:
    candidate = EntityCandidate(type=" org ", value="  Acme \n Corp. ", context="  at   work ")
    assert (candidate.type, candidate.value, candidate.context) == ("ORG", "Acme Corp.", "at work")
    assert candidate.confidence == 0.8


def test_unknown_type_becomes_other() -> None:
    assert EntityCandidate(type="spaceship", value="Enterprise").type == "OTHER"


@pytest.mark.parametrize("value", ["", "   ", "\n\t"])
def test_empty_value_is_rejected(value: str) -> None:
    with pytest.raises(ValidationError, match="empty entity value"):
        EntityCandidate(type="ORG", value=value)


def test_over_long_value_is_rejected_and_the_limit_itself_is_accepted() -> None:
    assert EntityCandidate(type="ORG", value="a" * MAX_VALUE_CHARS).value == "a" * MAX_VALUE_CHARS
    with pytest.raises(ValidationError, match=r"longer than|at most"):
        EntityCandidate(type="ORG", value="a" * (MAX_VALUE_CHARS + 1))


def test_long_context_is_truncated_not_rejected() -> None:
    candidate = EntityCandidate(type="ORG", value="Acme", context="x" * 1000)
    assert len(candidate.context) == MAX_CONTEXT_CHARS


@pytest.mark.parametrize("confidence", [-0.1, 1.5])
def test_confidence_outside_zero_one_is_rejected(confidence: float) -> None:
    with pytest.raises(ValidationError):
        EntityCandidate(type="ORG", value="Acme", confidence=confidence)


# --- parse_candidates ------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "arguments",
    [
        {"entities": "Acme"},
        {"entities": {"type": "ORG", "value": "Acme"}},
        {"items": []},
        {},
        [{"type": "ORG", "value": "Acme"}],
        "Acme",
        None,
    ],
)
def test_parse_candidates_rejects_arguments_of_the_wrong_shape(arguments: object) -> None:
    with pytest.raises(ValueError):  # pydantic's ValidationError is a ValueError too
        parse_candidates(arguments)


def test_parse_candidates_keeps_valid_entities() -> None:
    kept, dropped = parse_candidates(
        {"entities": [{"type": "ORG", "value": "Acme"}, {"type": "person", "value": "Bob", "confidence": 1}]}
    )
    assert [(c.type, c.value) for c in kept] == [("ORG", "Acme"), ("PERSON", "Bob")]
    assert dropped == []


def test_parse_candidates_drops_a_single_bad_entity_with_a_note() -> None:
    kept, dropped = parse_candidates(
        {
            "entities": [
                {"type": "ORG", "value": "Acme"},
                {"type": "ORG", "value": ""},
                {"type": "ORG"},
                {"type": "LOC", "value": "Paris"},
            ]
        }
    )
    assert [c.value for c in kept] == ["Acme", "Paris"]
    assert len(dropped) == 2
    assert "empty entity value" in dropped[0]


# --- the profile part of the tool call ---------------------------------------------------------------


def test_extraction_schema_has_entities_and_an_optional_bounded_profile() -> None:
    schema = Extraction.model_json_schema()
    assert set(schema["properties"]) == {"entities", "profile"}
    assert schema["properties"]["entities"]["maxItems"] == 12
    assert "profile" not in schema.get("required", [])


def test_parse_profile_keeps_a_valid_profile_and_treats_empty_as_none() -> None:
    profile = parse_profile({"name": " Ada ", "facts": [{"attribute": "lives in", "value": "Lisbon"}]})
    assert profile is not None
    assert (profile.name, profile.facts[0].attribute) == ("Ada", "lives_in")
    assert parse_profile(None) is None
    assert parse_profile({}) is None
    assert parse_profile({"interests": []}) is None


@pytest.mark.parametrize(
    "raw",
    [
        {"name": "x" * 5000},  # a runaway generation, not a name to cut down
        {"facts": [{"attribute": "lives_in", "value": "y" * 300}]},
        {"name": {"first": "Ada"}},
        {"facts": "lots"},
        "Ada",
    ],
    ids=["huge-name", "huge-fact", "name-object", "facts-string", "not-an-object"],
)
def test_parse_profile_refuses_absurd_values(raw: object) -> None:
    with pytest.raises(ValueError):
        parse_profile(raw)


def test_read_record_skips_missing_and_unreadable_items() -> None:
    def item(value: dict[str, object]) -> Item:
        return Item(value=value, key="k", namespace=("n",), created_at=NOW, updated_at=NOW)

    assert read_record(item(record("Acme").model_dump())) == record("Acme")
    assert read_record(item({"value": 3})) is None
    assert read_record(None) is None


def test_parse_candidates_accepts_an_empty_list() -> None:
    assert parse_candidates({"entities": []}) == ([], [])


# --- merge_entity ----------------------------------------------------------------------------------


def first_record() -> EntityRecord:
    record = merge_entity(
        None,
        EntityCandidate(type="ORG", value="Acme", context="works at Acme", confidence=0.6),
        message_id="m1",
        thread_id="t1",
        now=T0,
    )
    assert record is not None
    return record


def test_merge_new_entity_creates_a_record_with_one_mention() -> None:
    record = first_record()
    assert record.model_dump() == {
        "type": "ORG",
        "value": "Acme",
        "aliases": [],
        "contexts": ["works at Acme"],
        "confidence": 0.6,
        "first_seen": T0,
        "last_seen": T0,
        "mentions": 1,
        "threads": ["t1"],
        "source_message_ids": ["m1"],
    }


def test_merge_same_message_again_changes_nothing() -> None:
    record = first_record()
    again = EntityCandidate(type="ORG", value="ACME Corp.", context="again", confidence=0.9)
    assert merge_entity(record, again, message_id="m1", thread_id="t2", now=T1) is None


def test_merge_new_message_counts_once_more_and_records_alias_and_thread() -> None:
    record = first_record()
    candidate = EntityCandidate(
        type="ORG", value="ACME Corp.", context="signed with ACME Corp.", confidence=0.9
    )
    merged = merge_entity(record, candidate, message_id="m2", thread_id="t2", now=T1)
    assert merged is not None
    assert merged.value == "Acme"  # the first spelling stays the name
    assert merged.aliases == ["ACME Corp."]
    assert merged.mentions == 2
    assert merged.threads == ["t1", "t2"]
    assert merged.source_message_ids == ["m1", "m2"]
    assert (merged.first_seen, merged.last_seen) == (T0, T1)
    assert merged.confidence == 0.9
    assert merged.contexts == ["works at Acme", "signed with ACME Corp."]
    assert record.mentions == 1  # the input record is not mutated


def test_merge_does_not_duplicate_aliases_or_threads() -> None:
    record = first_record()
    for n, value in enumerate(["ACME Corp.", "ACME Corp.", "Acme"], start=2):
        merged = merge_entity(
            record, EntityCandidate(type="ORG", value=value), message_id=f"m{n}", thread_id="t1", now=T1
        )
        assert merged is not None
        record = merged
    assert record.aliases == ["ACME Corp."]
    assert record.threads == ["t1"]
    assert record.mentions == 4
    assert record.confidence == 0.8  # max of 0.6 and the default 0.8


def test_merge_ignores_spellings_differing_only_in_case_or_spacing() -> None:
    record = first_record()
    for n, value in enumerate(["ACME", "acme", " Acme "], start=2):
        merged = merge_entity(
            record, EntityCandidate(type="ORG", value=value), message_id=f"m{n}", thread_id="t1", now=T1
        )
        assert merged is not None
        record = merged
    assert record.aliases == []


def test_merge_refines_a_record_typed_other_but_never_a_specific_one() -> None:
    other = merge_entity(
        None, EntityCandidate(type="OTHER", value="Bob"), message_id="m1", thread_id="t", now=T0
    )
    assert other is not None
    person = merge_entity(
        other, EntityCandidate(type="PERSON", value="Bob"), message_id="m2", thread_id="t", now=T1
    )
    assert person is not None and person.type == "PERSON"
    again = merge_entity(
        person, EntityCandidate(type="OTHER", value="Bob"), message_id="m3", thread_id="t", now=T1
    )
    assert again is not None and again.type == "PERSON"


def test_with_alias_adds_a_new_spelling_once() -> None:
    record = first_record()
    aliased = with_alias(record, "ACME Corp.")
    assert aliased is not None and aliased.aliases == ["ACME Corp."]
    assert aliased.mentions == record.mentions
    assert with_alias(aliased, "acme corp.") is None
    assert with_alias(record, "ACME") is None


def test_merge_keeps_only_the_latest_contexts() -> None:
    record = first_record()
    for n in range(KEPT_CONTEXTS + 3):
        candidate = EntityCandidate(type="ORG", value="Acme", context=f"ctx {n}")
        merged = merge_entity(record, candidate, message_id=f"x{n}", thread_id="t1", now=T1)
        assert merged is not None
        record = merged
    assert record.contexts == [f"ctx {n}" for n in range(3, KEPT_CONTEXTS + 3)]


# --- ranking and formatting what load_memory shows ----------------------------------------------------


def record(value: str, *, mentions: int = 1, last_seen: str = T0, type: str = "ORG") -> EntityRecord:
    return EntityRecord(
        type=type, value=value, first_seen=T0, last_seen=last_seen, mentions=mentions, contexts=[]
    )


def test_rank_puts_entities_named_in_the_message_first_then_mentions_then_recency() -> None:
    records = [
        record("Paris", mentions=9, type="LOC"),
        record("Acme", mentions=1),
        record("Berlin", mentions=2, last_seen=T0, type="LOC"),
        record("Vienna", mentions=2, last_seen=T1, type="LOC"),
    ]
    ranked = rank_entities(records, "What do you remember about acme?")
    assert [r.value for r in ranked] == ["Acme", "Paris", "Vienna", "Berlin"]


def test_rank_matches_aliases_too() -> None:
    aliased = record("Robert", mentions=1, type="PERSON")
    aliased.aliases.append("Bobby")
    ranked = rank_entities([record("Paris", mentions=5, type="LOC"), aliased], "did bobby call?")
    assert ranked[0].value == "Robert"


def test_rank_matches_short_entity_names() -> None:
    records = [record("Paris", mentions=9, type="LOC"), record("UK", mentions=1, type="LOC")]
    assert rank_entities(records, "I am moving to the UK")[0].value == "UK"


def test_format_memory_stays_within_its_token_budget_and_reports_what_it_kept() -> None:
    records = [record(f"Entity {n:02d}") for n in range(50)]
    text, kept = format_memory(records, max_tokens=60)
    assert text.startswith(MEMORY_HEADER)
    assert 0 < len(kept) < 50
    assert kept == [r.value for r in records[: len(kept)]]  # the best-ranked ones, in order
    assert len(text) // 4 <= 60
    assert all(value in text for value in kept)
    assert records[len(kept)].value not in text


def test_format_memory_with_no_room_or_no_records_is_empty() -> None:
    assert format_memory([record("Acme")], max_tokens=0) == ("", [])
    assert format_memory([], max_tokens=400) == ("", [])
