"""The pure rules behind hand edits of memory: a renamed record, a closed fact, a mention in no thread."""

from __future__ import annotations

from nodes.memory import EntityCandidate, EntityRecord, edited_entity, merge_entity
from nodes.profile import FactStatement, ProfileUpdate, close_fact, fact_attribute, merge_profile

T0, T1, T2 = "2026-01-01T00:00:00+00:00", "2026-02-01T00:00:00+00:00", "2026-03-01T00:00:00+00:00"

ACME = EntityRecord(
    type="ORG",
    value="Acme",
    aliases=["ACME Corp", "Acme Inc"],
    contexts=["employer"],
    first_seen=T0,
    last_seen=T1,
    mentions=3,
    threads=["t1"],
    source_message_ids=["m1", "m2", "m3"],
)


def test_a_rename_keeps_the_old_name_as_an_alias_and_drops_the_new_one_from_the_aliases() -> None:
    edited = edited_entity(ACME, entity_type="ORG", value="ACME Corp", contexts=ACME.contexts)
    assert (edited.value, edited.aliases) == ("ACME Corp", ["Acme Inc", "Acme"])
    unchanged = ("mentions", "first_seen", "last_seen", "threads", "source_message_ids")
    assert all(getattr(edited, field) == getattr(ACME, field) for field in unchanged)


def test_a_new_spelling_of_the_same_name_adds_no_alias_and_contexts_are_capped() -> None:
    edited = edited_entity(ACME, entity_type="TECH", value="ACME", contexts=[str(n) for n in range(8)])
    assert (edited.type, edited.value, edited.aliases) == ("TECH", "ACME", ACME.aliases)
    assert edited.contexts == ["3", "4", "5", "6", "7"]


def test_a_mention_in_no_thread_adds_no_thread() -> None:
    candidate = EntityCandidate(type="ORG", value="Acme")
    new = merge_entity(None, candidate, message_id="manual:x", thread_id=None, now=T2)
    assert new is not None and new.threads == []
    merged = merge_entity(ACME, candidate, message_id="manual:x", thread_id=None, now=T2)
    assert merged is not None and (merged.threads, merged.mentions) == (["t1"], 4)


def test_closing_a_fact_keeps_its_history_and_only_a_current_value_closes() -> None:
    update = ProfileUpdate(facts=[FactStatement(attribute="lives in", value="Paris")])
    profile = merge_profile(None, update, message_id="m1", now=T0)
    assert profile is not None
    closed = close_fact(profile, "lives_in", message_id="manual:1", now=T1)
    assert closed is not None and closed.current_facts() == {}
    assert [(v.value, v.valid_from, v.valid_to) for v in closed.facts["lives_in"]] == [("Paris", T0, T1)]
    assert (closed.updated_at, closed.source_message_ids) == (T1, ["m1", "manual:1"])
    assert close_fact(closed, "lives_in", message_id="manual:2", now=T2) is None
    assert close_fact(profile, "employer", message_id="manual:2", now=T2) is None


def test_fact_attributes_are_snake_case_as_extraction_keeps_them() -> None:
    assert fact_attribute(" Lives-in ") == fact_attribute("lives in") == "lives_in"
    assert fact_attribute("?!") == ""
