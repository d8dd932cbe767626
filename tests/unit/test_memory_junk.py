"""Junk is never stored, whatever the model says: each kind a small model was seen to propose, fed through the
extract_entities node by a fake model at its seam, leaves the store without entities or profile."""

from __future__ import annotations

from typing import Any

import pytest
from langchain_core.messages import AIMessage, HumanMessage
from langgraph.checkpoint.memory import InMemorySaver
from langgraph.graph import END, START, StateGraph
from langgraph.store.memory import InMemoryStore

from nodes.extract_entities import make_extract_entities
from nodes.extraction_request import request_extraction
from nodes.grounding import about_the_user, grounded, introduces_self, junk_reason
from nodes.memory import EntityCandidate
from nodes.namespaces import entity_namespace
from nodes.profile import load_profile
from nodes.state import Context, State
from tests.support.fakes import fake, ticking_clock, tool_call

USER_SAYS = "My sister Beatriz moved to Porto last spring."


async def stored_after(reply: AIMessage, said: str = USER_SAYS) -> tuple[list[str], Any]:
    """Entity values and profile the node stores when the model answers `reply` to the user's `said`."""
    store = InMemoryStore()
    builder = StateGraph(State, context_schema=Context)
    builder.add_node("extract_entities", make_extract_entities(fake(reply), clock=ticking_clock()))
    builder.add_edge(START, "extract_entities")
    builder.add_edge("extract_entities", END)
    graph = builder.compile(checkpointer=InMemorySaver(), store=store)
    config: Any = {"configurable": {"thread_id": "t"}}
    await graph.ainvoke({"messages": [HumanMessage(said, id="h1")]}, config, context=Context(user_id="u1"))
    records = await store.asearch(entity_namespace("u1"), limit=100)
    return [item.value["value"] for item in records], await load_profile(store, "u1")


JUNK_VALUES = [
    "}, {",
    "][",
    "None",
    "null",
    "N/A",
    "unknown",
    "No such thing exists",
    "The newest user message.",
    "This is a new message.",
    "I love it!",
    "Captain Jameson is known for his kindness",
    "{type: PERSON}",
    "assistant",
]


@pytest.mark.parametrize("value", JUNK_VALUES)
def test_junk_values_are_refused_by_shape(value: str) -> None:
    assert junk_reason(value) is not None
    with pytest.raises(ValueError):
        EntityCandidate(type="OTHER", value=value)


@pytest.mark.parametrize(
    "value", ["Ada Lovelace", "Acme Inc.", "The Hague", "Dr. Okafor", "C++", "14 June", "St Mary's Hospital"]
)
def test_names_pass_the_shape_checks(value: str) -> None:
    assert junk_reason(value) is None


@pytest.mark.parametrize("value", JUNK_VALUES)
async def test_no_junk_entity_is_stored(value: str) -> None:
    entities, _ = await stored_after(tool_call({"entities": [{"type": "OTHER", "value": value}]}))
    assert entities == []


@pytest.mark.parametrize(
    "value",
    [
        "Maria Rossi",  # from the prompt's worked examples
        "Lighthouse Keeper's App",  # the assistant's own words, never the user's
        "SmolLM",  # the model's name in its instructions
    ],
)
async def test_a_value_not_in_the_users_words_is_not_stored(value: str) -> None:
    entities, _ = await stored_after(tool_call({"entities": [{"type": "PERSON", "value": value}]}))
    assert entities == []


async def test_the_users_own_names_are_stored_beside_the_junk() -> None:
    proposal = {
        "entities": [
            {"type": "PERSON", "value": "Beatriz"},
            {"type": "OTHER", "value": "None"},
            {"type": "LOC", "value": "porto"},
            {"type": "ORG", "value": "Acme"},
        ]
    }
    entities, _ = await stored_after(tool_call(proposal))
    assert sorted(entities) == ["Beatriz", "porto"]


@pytest.mark.parametrize(
    "profile",
    [
        {"name": "Beatriz"},  # a third person's name: the user never said it was theirs
        {"name": "Lemmy_Lovelace"},  # not in the user's words
        {"name": "None"},
        {"facts": [{"attribute": "lives_in", "value": "Porto"}]},  # the sister's city, not the user's
        {"facts": [{"attribute": "lives_in", "value": "N/A"}]},
        {"facts": [{"attribute": "type", "value": "No such thing exists"}]},
        {"language": "Python"},
        {"interests": ["}, {", "null"]},
    ],
)
async def test_no_junk_profile_is_stored(profile: dict[str, Any]) -> None:
    _, stored = await stored_after(tool_call({"entities": [], "profile": profile}))
    assert stored is None


async def test_a_profile_the_user_stated_is_stored() -> None:
    said = "Hi! My name is Ada Lovelace. I live in Lisbon and I work at Acme on Kubernetes."
    profile = {
        "name": "Ada Lovelace",
        "facts": [{"attribute": "lives_in", "value": "Lisbon"}, {"attribute": "works_at", "value": "Acme"}],
    }
    _, stored = await stored_after(tool_call({"entities": [], "profile": profile}), said)
    assert stored is not None
    assert stored.name == "Ada Lovelace"
    assert stored.current_facts() == {"lives_in": "Lisbon", "works_at": "Acme"}


async def test_a_json_reply_is_read_like_a_tool_call() -> None:
    reply = AIMessage('{"entities": [{"type": "LOC", "value": "Porto"}, {"type": "OTHER", "value": "}, {"}]}')
    result = await request_extraction(fake(reply), USER_SAYS)
    assert [e["value"] for e in result["entities"]] == ["Porto"]
    assert len(result["dropped"]) == 1


def test_grounding_rules() -> None:
    assert grounded("Ada's Lovelace", "I'm ada LOVELACE")
    assert not grounded("Ada Byron", "I'm Ada Lovelace")
    assert introduces_self("Hi, I'm Ada Lovelace.", "Ada Lovelace")
    assert introduces_self("call me Ada", "Ada")
    assert not introduces_self(USER_SAYS, "Beatriz")
    assert about_the_user("Lisbon", "I live in Lisbon.")
    assert not about_the_user("Porto", USER_SAYS)
    assert not about_the_user("Porto", "I'm fine. She moved to Porto.")
