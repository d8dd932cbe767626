"""The answers a memory review accepts, in one place: what each means, and the numbered list it refers to."""

from __future__ import annotations

import json
import re
from typing import Any, NamedTuple

from pydantic import ValidationError

from nodes.errors import InvalidInput
from nodes.memory import EntityCandidate, parse_profile

__all__ = [
    "REVIEW_ANSWERS",
    "ReviewChoice",
    "ReviewItem",
    "decide_review",
    "read_review_answer",
    "review_items",
]

REVIEW_ANSWERS = (
    'approve, reject, the numbers to keep (e.g. 1,3 or "2 3"), or a JSON list of entities like '
    '[{"type": "PERSON", "value": "Ada"}]'
)
"""What a person may answer, as the refusals and the prompt say it."""

_WORDS = {"approve": True, "reject": False}
_NUMBERS = re.compile(r"^\s*\d+(?:\s*[,\s]\s*\d+)*\s*$")
_PROFILE_SCALARS = ("name", "language", "communication_style")
_PROFILE_LISTS = ("interests", "preferred_topics", "facts")


class ReviewItem(NamedTuple):
    """One numbered line of a proposal: an entity, or one profile fact (a scalar or one list element)."""

    kind: str
    """"entity", or the profile field it belongs to."""
    label: str
    value: Any


class ReviewChoice(NamedTuple):
    """What the reviewer keeps."""

    entities: list[dict[str, Any]]
    profile: dict[str, Any] | None


def review_items(review: dict[str, Any]) -> list[ReviewItem]:
    """The proposal as the reviewer sees it, numbered from 1: its entities, then its profile facts."""
    items = [ReviewItem("entity", str(e.get("type", "")), e) for e in review.get("entities") or []]
    profile: dict[str, Any] = review.get("profile") or {}
    for field in _PROFILE_SCALARS:
        if profile.get(field):
            items.append(ReviewItem(field, field, profile[field]))
    for field in _PROFILE_LISTS:
        for element in profile.get(field) or []:
            label = f"fact {element.get('attribute', '')}" if isinstance(element, dict) else field
            items.append(ReviewItem(field, label, element))
    return items


def _kept_numbers(text: str, count: int) -> list[int]:
    numbers = sorted({int(part) for part in re.split(r"[,\s]+", text.strip()) if part})
    wrong = [n for n in numbers if not 1 <= n <= count]
    if wrong:
        raise ValueError(f"there is no item {wrong[0]}: the proposal has items 1 to {count}")
    return numbers


def _kept(review: dict[str, Any], numbers: list[int]) -> ReviewChoice:
    items = review_items(review)
    chosen = [items[n - 1] for n in numbers]
    profile: dict[str, Any] = {}
    for item in chosen:
        if item.kind in _PROFILE_LISTS:
            profile.setdefault(item.kind, []).append(item.value)
        elif item.kind != "entity":
            profile[item.kind] = item.value
    return ReviewChoice([i.value for i in chosen if i.kind == "entity"], profile or None)


def _edited(answer: list[Any] | dict[str, Any]) -> ReviewChoice:
    """A list replaces the entities; {"entities": [...], "profile": {...}} also gives the profile to keep."""
    edited = answer.get("entities") if isinstance(answer, dict) else answer
    if not isinstance(edited, list):
        raise ValueError('an edited answer is a list of entities or {"entities": [...], "profile": {...}}')
    entities = [EntityCandidate.model_validate(item).model_dump() for item in edited]
    raw_profile = answer.get("profile") if isinstance(answer, dict) else None
    profile = parse_profile(raw_profile) if raw_profile is not None else None
    return ReviewChoice(entities, profile.model_dump(exclude_defaults=True) if profile else None)


def decide_review(answer: Any, review: dict[str, Any]) -> ReviewChoice:
    """What an answer keeps of `review` (the interrupt's value); ValueError for anything not listed here.

    - "approve" / "reject" (any case), or the booleans true / false themselves (never 1 or 0);
    - a string of numbers to keep, separated by commas or spaces ("1,3", "2 3"), numbered as
      review_items numbers them;
    - an edited list of entities, or {"entities": [...], "profile": {...}}: what is kept is what was given.
    """
    if isinstance(answer, bool):
        approve: bool | None = answer
    elif isinstance(answer, str) and answer.strip().lower() in _WORDS:
        approve = _WORDS[answer.strip().lower()]
    else:
        approve = None
    if approve is not None:
        kept = ReviewChoice(review.get("entities") or [], review.get("profile"))
        return kept if approve else ReviewChoice([], None)
    if isinstance(answer, str) and _NUMBERS.match(answer):
        return _kept(review, _kept_numbers(answer, len(review_items(review))))
    if isinstance(answer, list | dict):
        try:
            return _edited(answer)
        except ValidationError as error:
            raise ValueError(str(error).splitlines()[0]) from None
    raise ValueError(f"{str(answer)[:40]!r} is not an answer")


def read_review_answer(text: str) -> Any:
    """A typed answer (the CLI's --value, the prompt): a JSON list or object when it starts like one,
    else the text itself (a word or numbers); decide_review says whether it is one."""
    stripped = text.strip()
    if not stripped.startswith(("[", "{")):
        return stripped
    try:
        return json.loads(stripped)
    except json.JSONDecodeError as error:
        raise InvalidInput(f"That answer is not valid JSON ({error.msg}): give {REVIEW_ANSWERS}.") from None
