"""The offline first pass: facts from first-person patterns, types from what the sentence says, the merge
with the model's proposal. Spans are given by hand; the spaCy pipeline itself runs in the last test."""

from __future__ import annotations

import importlib.util
from typing import Any

import pytest

from nodes.extraction_request import merge_recognition, request_extraction
from nodes.profile import ProfileUpdate
from nodes.recognizer import SPACY_PIPELINE, Recognition, Span, recognize, spacy_recognizer
from tests.support.fakes import fake, tool_call

INTRO = "Hi! My name is Ada Lovelace. I live in Lisbon and I work at Acme on Kubernetes."


def spans_of(text: str, *named: tuple[str, str]) -> list[Span]:
    return [Span(text.index(value), text.index(value) + len(value), type_) for value, type_ in named]


def entities_of(found: Recognition) -> list[tuple[str, str]]:
    return [(e.type, e.value) for e in found.entities]


def test_the_tours_introduction_gives_entities_and_facts() -> None:
    # A tagger that runs "Acme on" together and calls Acme a place: the patterns put that right.
    spans = spans_of(
        INTRO, ("Ada Lovelace", "PERSON"), ("Lisbon", "LOC"), ("Acme on", "LOC"), ("Kubernetes", "TECH")
    )
    found = recognize(INTRO, spans)
    assert entities_of(found) == [
        ("PERSON", "Ada Lovelace"),
        ("LOC", "Lisbon"),
        ("ORG", "Acme"),
        ("TECH", "Kubernetes"),
    ]
    assert found.profile is not None
    assert found.profile.name == "Ada Lovelace"
    assert {f.attribute: f.value for f in found.profile.facts} == {"lives_in": "Lisbon", "works_at": "Acme"}


def test_a_relative_is_a_person_and_their_city_is_not_the_users() -> None:
    text = "My sister Beatriz moved to Porto last spring."
    found = recognize(text, spans_of(text, ("Beatriz", "ORG"), ("Porto", "LOC"), ("last spring", "DATE")))
    assert entities_of(found) == [("PERSON", "Beatriz"), ("LOC", "Porto"), ("DATE", "last spring")]
    assert found.profile is None


@pytest.mark.parametrize(
    ("text", "facts"),
    [
        ("I'm based in Buenos Aires but I travel a lot.", {"lives_in": "Buenos Aires"}),
        ("We just moved to Nairobi.", {"lives_in": "Nairobi"}),
        ("I do accounting at Deloitte.", {"works_at": "Deloitte"}),
        ("I just joined Shopify on the payments team.", {"works_at": "Shopify"}),
        ("I'm a nurse at St Mary's Hospital.", {"works_at": "St Mary's Hospital"}),
        ("My husband works at Nobu.", {}),
        ("Tell me about life in Lisbon.", {}),
    ],
)
def test_facts_come_from_first_person_patterns_without_a_tagger(text: str, facts: dict[str, str]) -> None:
    found = recognize(text, [])
    stated = {f.attribute: f.value for f in found.profile.facts} if found.profile else {}
    assert stated == facts


@pytest.mark.parametrize(
    ("text", "name"),
    [
        ("Call me Priya. I'm a nurse.", "Priya"),
        ("I'm Tom, nice to meet you.", "Tom"),
        ("I am Spanish but I live in Berlin.", None),
        ("I'm tired today.", None),
    ],
)
def test_a_name_only_from_a_self_introduction(text: str, name: str | None) -> None:
    found = recognize(text, [])
    assert (found.profile.name if found.profile else None) == name


def test_the_model_adds_what_the_first_pass_missed_but_never_overrides_it() -> None:
    first = recognize(INTRO, spans_of(INTRO, ("Lisbon", "LOC"), ("Acme", "ORG")))
    proposed: dict[str, Any] = {
        "entities": [
            {"type": "PERSON", "value": "Lisbon"},  # a worse type for a name already found
            {"type": "TECH", "value": "Kubernetes"},
        ],
        "dropped": [],
        "error": None,
        "profile": {"name": "Ada Lovelace", "facts": [{"attribute": "lives_in", "value": "Acme"}]},
    }
    merged = merge_recognition(first, proposed)
    assert [(e["type"], e["value"]) for e in merged["entities"]] == [
        ("LOC", "Lisbon"),
        ("ORG", "Acme"),
        ("PERSON", "Ada Lovelace"),  # "My name is ..." without a tagger
        ("TECH", "Kubernetes"),
    ]
    profile = ProfileUpdate.model_validate(merged["profile"])
    assert profile.name == "Ada Lovelace"
    assert {f.attribute: f.value for f in profile.facts} == {"lives_in": "Lisbon", "works_at": "Acme"}


async def test_without_a_model_the_recognizer_answers_alone() -> None:
    def recognizer(text: str) -> Recognition:
        return recognize(text, spans_of(text, ("Lisbon", "LOC")))

    result = await request_extraction(None, "I live in Lisbon.", recognizer=recognizer)
    assert [(e["type"], e["value"]) for e in result["entities"]] == [("LOC", "Lisbon")]
    assert result["profile"] == {"facts": [{"attribute": "lives_in", "value": "Lisbon"}]}


async def test_the_model_is_asked_after_the_first_pass_and_its_junk_dropped() -> None:
    model = fake(
        tool_call({"entities": [{"type": "TECH", "value": "Kubernetes"}, {"type": "OTHER", "value": "None"}]})
    )
    result = await request_extraction(
        model, INTRO, recognizer=lambda text: recognize(text, []), examples=True
    )
    values = [e["value"] for e in result["entities"]]
    assert "Kubernetes" in values and "None" not in values
    assert len(model.prompts) == 1


@pytest.mark.skipif(
    importlib.util.find_spec(SPACY_PIPELINE) is None, reason="the `local` extra installs spaCy"
)
def test_the_spacy_pipeline_finds_the_tours_names() -> None:
    found = spacy_recognizer()(INTRO)
    assert set(entities_of(found)) >= {
        ("PERSON", "Ada Lovelace"),
        ("LOC", "Lisbon"),
        ("ORG", "Acme"),
        ("TECH", "Kubernetes"),
    }
