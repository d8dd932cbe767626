"""The answers a memory review accepts (nodes.review), and nothing else: no value is a boolean by accident."""

from __future__ import annotations

from typing import Any

import pytest

from nodes.errors import InvalidInput
from nodes.extract_entities import check_review_answer
from nodes.review import decide_review, read_review_answer, review_items
from tests.support.fakes import ACME, BOB

PROFILE = {"name": "Ada", "facts": [{"attribute": "lives_in", "value": "Paris"}], "interests": ["chess"]}
REVIEW: dict[str, Any] = {
    "type": "memory_review",
    "message_id": "m",
    "entities": [ACME, BOB],
    "profile": PROFILE,
}


class Pending:
    def __init__(self, value: Any) -> None:
        self.value = value


def test_items_are_numbered_entities_then_profile_facts() -> None:
    assert [(i.kind, i.value) for i in review_items(REVIEW)] == [
        ("entity", ACME),
        ("entity", BOB),
        ("name", "Ada"),
        ("interests", "chess"),
        ("facts", {"attribute": "lives_in", "value": "Paris"}),
    ]


@pytest.mark.parametrize("answer", ["approve", " Approve ", True])
def test_approval_keeps_everything(answer: Any) -> None:
    assert decide_review(answer, REVIEW) == ([ACME, BOB], PROFILE)


@pytest.mark.parametrize("answer", ["reject", "REJECT", False])
def test_rejection_keeps_nothing(answer: Any) -> None:
    assert decide_review(answer, REVIEW) == ([], None)


@pytest.mark.parametrize(
    ("answer", "entities", "profile"),
    [
        ("1", [ACME], None),
        ("1,3", [ACME], {"name": "Ada"}),
        ("2 5", [BOB], {"facts": [{"attribute": "lives_in", "value": "Paris"}]}),
        (" 4 , 2 ", [BOB], {"interests": ["chess"]}),
    ],
)
def test_numbers_keep_those_items(answer: str, entities: list[Any], profile: Any) -> None:
    assert decide_review(answer, REVIEW) == (entities, profile)


def test_an_edited_list_replaces_the_proposal() -> None:
    edited = [{"type": "person", "value": " Robert "}]
    expected = [{"type": "PERSON", "value": "Robert", "context": "", "confidence": 0.8}]
    assert decide_review(edited, REVIEW) == (expected, None)
    assert decide_review({"entities": edited, "profile": {"name": "Bob"}}, REVIEW) == (
        expected,
        {"name": "Bob"},
    )
    assert decide_review([], REVIEW) == ([], None)


@pytest.mark.parametrize(
    "answer",
    [1, 0, 1.0, None, "maybe", "yes", "", "0", "6", "1,9", "1;2", {"decision": "approve"}, [{"type": "ORG"}]],
)
def test_anything_else_is_refused(answer: Any) -> None:
    with pytest.raises(ValueError):
        decide_review(answer, REVIEW)
    with pytest.raises(InvalidInput, match="approve, reject, the numbers to keep"):
        check_review_answer([Pending(REVIEW)], answer)


@pytest.mark.parametrize(
    ("text", "answer"),
    [
        ("approve", "approve"),
        (" 1,3 ", "1,3"),
        ("1", "1"),
        ("true", "true"),
        ('[{"type": "ORG", "value": "X"}]', [{"type": "ORG", "value": "X"}]),
    ],
)
def test_typed_answers_are_read_as_text_unless_json(text: str, answer: Any) -> None:
    assert read_review_answer(text) == answer


def test_typed_json_that_does_not_parse_is_refused() -> None:
    with pytest.raises(InvalidInput, match="not valid JSON"):
        read_review_answer("[{oops")
