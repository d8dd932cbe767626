"""The user's profile: identity, preferences and facts that change over time, one document per user."""

from __future__ import annotations

import logging
import math
import re
from collections.abc import Mapping
from typing import Annotated, Any

from langgraph.store.base import BaseStore
from pydantic import BaseModel, BeforeValidator, Field, ValidationError, field_validator

from nodes.grounding import about_the_user, grounded, introduces_self, junk_reason
from nodes.memory_batch import Address, MemoryBatch
from nodes.namespaces import profile_namespace
from nodes.prompts import PROFILE_HEADER

__all__ = [
    "FACT_ATTRIBUTE_CHARS",
    "FACT_VALUE_CHARS",
    "KEPT_FACT_VERSIONS",
    "KEPT_LIST_ITEMS",
    "KEPT_SOURCE_IDS",
    "MAX_FACTS",
    "PROFILE_KEY",
    "FactStatement",
    "FactVersion",
    "ProfileUpdate",
    "UserProfile",
    "close_fact",
    "fact_attribute",
    "fit_lines",
    "format_profile",
    "ground_profile",
    "load_profile",
    "merge_profile",
    "profile_address",
    "read_profile",
    "save_profile",
    "stage_profile",
    "text_tokens",
    "update_profile",
]

_log = logging.getLogger("convomem.memory")

PROFILE_KEY = "profile"
KEPT_SOURCE_IDS = 50
KEPT_LIST_ITEMS = 20
"""Interests and preferred topics kept per user (newest win)."""
MAX_FACTS = 50
"""Fact attributes kept per user; the ones unchanged the longest go first."""
KEPT_FACT_VERSIONS = 10
FACT_ATTRIBUTE_CHARS = 40
FACT_VALUE_CHARS = 80


def _collapse(value: object, max_chars: int) -> object:
    """Whitespace collapsed and cut to `max_chars`; blank or junk (nodes.grounding.junk_reason) becomes
    None. Non-strings pass to validation."""
    if not isinstance(value, str):
        return value
    cleaned = " ".join(value.split())[:max_chars].strip()
    return cleaned if cleaned and junk_reason(cleaned) is None else None


def _clean_list(value: object, max_items: int, max_chars: int) -> object:
    """A tiny model's list, made usable: one string becomes a list, blanks and repeats go, cut to size."""
    if value is None:
        return []
    items = [value] if isinstance(value, str) else value
    if not isinstance(items, list):
        return value
    kept: list[object] = []
    seen: set[str] = set()
    for item in items:
        cleaned = _collapse(item, max_chars)
        if isinstance(cleaned, str) and cleaned.casefold() not in seen:
            seen.add(cleaned.casefold())
            kept.append(cleaned)
    return kept[:max_items]


def _optional_text(max_chars: int) -> Any:
    return BeforeValidator(lambda value: _collapse(value, max_chars))


def _bounded_list(max_items: int, max_chars: int) -> Any:
    return BeforeValidator(lambda value: _clean_list(value, max_items, max_chars))


# The bounds below are part of the extraction tool schema: a grammar-constrained local model must be able
# to finish its JSON. No field descriptions: small models copy them as values.
Name = Annotated[Annotated[str, Field(max_length=60)] | None, _optional_text(60)]
Language = Annotated[Annotated[str, Field(max_length=30)] | None, _optional_text(30)]
Style = Annotated[Annotated[str, Field(max_length=80)] | None, _optional_text(80)]
Topics = Annotated[list[Annotated[str, Field(max_length=40)]], Field(max_length=5), _bounded_list(5, 40)]


def fact_attribute(text: str) -> str:
    """An attribute as facts are kept under it: "Lives in" and "lives-in" are one attribute (lives_in),
    or its history would split in two."""
    return "_".join(re.sub(r"[^\w]+", " ", text.casefold()).split())[:FACT_ATTRIBUTE_CHARS].strip("_")


class FactStatement(BaseModel):
    """One fact about the user."""

    attribute: str = Field(max_length=FACT_ATTRIBUTE_CHARS)
    value: str = Field(max_length=FACT_VALUE_CHARS)

    @field_validator("attribute", mode="before")
    @classmethod
    def _snake_case(cls, value: object) -> object:
        return fact_attribute(value) if isinstance(value, str) else value

    @field_validator("value", mode="before")
    @classmethod
    def _collapsed(cls, value: object) -> object:
        return _collapse(value, FACT_VALUE_CHARS) or ""

    @field_validator("attribute", "value")
    @classmethod
    def _not_blank(cls, value: str) -> str:
        if not value:
            raise ValueError("blank")
        return value


def _valid_facts(value: object) -> object:
    """Facts that validate, at most 5; one bad fact is dropped instead of failing the whole update."""
    if value is None:
        return []
    if not isinstance(value, list):
        return value
    kept: list[FactStatement] = []
    for raw in value:
        try:
            kept.append(FactStatement.model_validate(raw))
        except ValidationError:
            continue
    return kept[:5]


class ProfileUpdate(BaseModel):
    """What the newest message says about the user."""

    name: Name = None
    language: Language = None
    communication_style: Style = None
    interests: Topics = Field(default_factory=list)
    preferred_topics: Topics = Field(default_factory=list)
    facts: Annotated[list[FactStatement], Field(max_length=5), BeforeValidator(_valid_facts)] = Field(
        default_factory=list
    )


def ground_profile(profile: ProfileUpdate, source: str) -> ProfileUpdate:
    """Only what the user said about themselves, in their own words (`source`): a name they introduced
    themselves with, facts stated in the first person and not about a relative, and words they wrote.

    What the model took from its instructions, its examples or a third person is dropped.
    """
    name = profile.name if profile.name and introduces_self(source, profile.name) else None
    name = name if name and grounded(name, source) else None

    def own(value: str | None) -> str | None:
        return value if value and grounded(value, source) else None

    return ProfileUpdate(
        name=name,
        language=own(profile.language),
        communication_style=own(profile.communication_style),
        interests=[item for item in profile.interests if own(item)],
        preferred_topics=[item for item in profile.preferred_topics if own(item)],
        facts=[
            fact
            for fact in profile.facts
            if grounded(fact.value, source) and about_the_user(fact.value, source)
        ],
    )


class FactVersion(BaseModel):
    """One value of a fact and when it held; valid_to None means it still holds."""

    value: str
    valid_from: str
    valid_to: str | None = None
    source_message_id: str = ""


class UserProfile(BaseModel):
    """What the store keeps per user: the latest identity and preferences, facts with their history."""

    name: str | None = None
    language: str | None = None
    communication_style: str | None = None
    interests: list[str] = Field(default_factory=list)
    preferred_topics: list[str] = Field(default_factory=list)
    facts: dict[str, list[FactVersion]] = Field(default_factory=dict)
    updated_at: str = ""
    source_message_ids: list[str] = Field(default_factory=list)

    def identity(self) -> list[tuple[str, str]]:
        """(label, text) of the identity fields, in display order; empty ones as ''."""
        return [
            ("name", self.name or ""),
            ("language", self.language or ""),
            ("communication style", self.communication_style or ""),
            ("interests", ", ".join(self.interests)),
            ("preferred topics", ", ".join(self.preferred_topics)),
        ]

    def current_facts(self) -> dict[str, str]:
        """Attribute -> the value that holds now."""
        return {
            attribute: versions[-1].value
            for attribute, versions in self.facts.items()
            if versions and versions[-1].valid_to is None
        }

    def past_facts(self) -> dict[str, list[FactVersion]]:
        """Attribute -> values that no longer hold, newest first."""
        past = {
            attribute: [v for v in reversed(versions) if v.valid_to is not None]
            for attribute, versions in self.facts.items()
        }
        return {attribute: versions for attribute, versions in past.items() if versions}


def _same(left: str | None, right: str | None) -> bool:
    return (left or "").casefold() == (right or "").casefold()


def _merged_list(existing: list[str], proposed: list[str]) -> list[str]:
    known = {item.casefold() for item in existing}
    return [*existing, *(item for item in proposed if item.casefold() not in known)][-KEPT_LIST_ITEMS:]


def _closed(version: FactVersion, now: str) -> FactVersion:
    return version.model_copy(update={"valid_to": now})


def _merged_facts(
    existing: dict[str, list[FactVersion]], proposed: list[FactStatement], *, message_id: str, now: str
) -> dict[str, list[FactVersion]]:
    """Facts after this message: a changed value closes the current version and opens a new one."""
    facts = dict(existing)
    latest = {fact.attribute: fact.value for fact in proposed}  # one message, one value per attribute
    for attribute, value in latest.items():
        versions = facts.get(attribute, [])
        current = versions[-1] if versions and versions[-1].valid_to is None else None
        if current is not None and _same(current.value, value):
            continue
        closed = [*versions[:-1], _closed(current, now)] if current else versions
        opened = FactVersion(value=value, valid_from=now, source_message_id=message_id)
        facts[attribute] = [*closed, opened][-KEPT_FACT_VERSIONS:]
    if len(facts) > MAX_FACTS:
        newest = sorted(facts, key=lambda a: facts[a][-1].valid_from, reverse=True)[:MAX_FACTS]
        facts = {attribute: facts[attribute] for attribute in facts if attribute in newest}
    return facts


def merge_profile(
    existing: UserProfile | None, update: ProfileUpdate, *, message_id: str, now: str
) -> UserProfile | None:
    """The profile after one more message, or None when nothing changes (so callers write nothing).

    Nothing changes when the message was already applied (a re-run after a crash) or when every
    proposed value already holds. Scalars compare case-insensitively: a tiny model's "english" after
    "English" is not news. A message that changed nothing is not recorded (nothing is written); the
    extraction marker per message id is what guards its re-run.
    """
    base = existing or UserProfile()
    if message_id in base.source_message_ids:
        return None
    changes: dict[str, Any] = {}
    for field in ("name", "language", "communication_style"):
        proposed = getattr(update, field)
        if proposed is not None and not _same(getattr(base, field), proposed):
            changes[field] = proposed
    for field in ("interests", "preferred_topics"):
        merged = _merged_list(getattr(base, field), getattr(update, field))
        if merged != getattr(base, field):
            changes[field] = merged
    facts = _merged_facts(base.facts, update.facts, message_id=message_id, now=now)
    if facts != base.facts:
        changes["facts"] = facts
    if not changes:
        return None
    return _changed(base, changes, message_id=message_id, now=now)


def _changed(profile: UserProfile, changes: dict[str, Any], *, message_id: str, now: str) -> UserProfile:
    """The profile with `changes`, stamped with the time and the message (or edit) that made them."""
    ids = [*profile.source_message_ids, message_id][-KEPT_SOURCE_IDS:]
    return profile.model_copy(update={**changes, "updated_at": now, "source_message_ids": ids})


def close_fact(profile: UserProfile, attribute: str, *, message_id: str, now: str) -> UserProfile | None:
    """The profile once `attribute` no longer holds: its current version closes (valid_to=now), the
    history stays, as when extraction replaces a value; None when no value of it holds now."""
    versions = profile.facts.get(attribute, [])
    if not versions or versions[-1].valid_to is not None:
        return None
    facts = {**profile.facts, attribute: [*versions[:-1], _closed(versions[-1], now)]}
    return _changed(profile, {"facts": facts}, message_id=message_id, now=now)


def profile_address(user_id: str) -> Address:
    """Where the user's one profile document lives."""
    return (profile_namespace(user_id), PROFILE_KEY)


def read_profile(value: Mapping[str, Any] | None, user_id: str) -> UserProfile | None:
    """The profile a stored value holds; an unreadable one is logged and treated as absent, not fatal
    to a turn."""
    if value is None:
        return None
    try:
        return UserProfile.model_validate(value)
    except ValidationError as error:
        _log.warning("profile of %s is unreadable and is ignored: %s", user_id, error.errors()[0]["msg"])
        return None


async def load_profile(store: BaseStore, user_id: str) -> UserProfile | None:
    """The stored profile (read_profile)."""
    item = await store.aget(*profile_address(user_id))
    return read_profile(item.value if item is not None else None, user_id)


async def stage_profile(
    batch: MemoryBatch, user_id: str, update: ProfileUpdate, *, message_id: str, now: str
) -> bool:
    """Queue on `batch` one extraction's change to the user's single profile document (a read only when
    `batch` does not hold it yet); True when something will be written."""
    address = profile_address(user_id)
    await batch.read([address])
    merged = merge_profile(
        read_profile(batch.value(*address), user_id), update, message_id=message_id, now=now
    )
    if merged is None:
        return False
    batch.put(*address, merged.model_dump())  # in place; never embedded
    return True


async def update_profile(
    store: BaseStore, user_id: str, update: ProfileUpdate, *, message_id: str, now: str
) -> bool:
    """Apply one extraction to the user's single profile document; True when something was written."""
    batch = MemoryBatch(store)
    written = await stage_profile(batch, user_id, update, message_id=message_id, now=now)
    await batch.flush()
    return written


async def save_profile(store: BaseStore, user_id: str, profile: UserProfile) -> None:
    """Write the user's single profile document (in place; never embedded)."""
    await store.aput(*profile_address(user_id), profile.model_dump(), index=False)


def text_tokens(text: str) -> int:
    """Tokens of prompt text as langchain-core's approximate counter sees it (4 characters a token)."""
    return math.ceil(len(text) / 4)


def fit_lines(header: str, lines: list[str], max_tokens: int) -> list[str]:
    """The header and the leading lines that fit `max_tokens` together; [] when no line fits."""
    kept: list[str] = []
    for line in lines:
        if text_tokens("\n".join([header, *kept, line])) > max_tokens:
            break
        kept.append(line)
    return [header, *kept] if kept else []


def _day(timestamp: str) -> str:
    return timestamp[:10]


def format_profile(profile: UserProfile, max_tokens: int) -> str:
    """Prompt lines, identity first, cut to `max_tokens`; past facts marked as such so the model does
    not mistake an old city for the current one."""
    lines = [f"- {label}: {value}" for label, value in profile.identity() if value]
    past = profile.past_facts()
    for attribute, versions in profile.facts.items():
        if not versions:
            continue
        current = versions[-1]
        before = "; before: " + ", ".join(v.value for v in past[attribute][:3]) if attribute in past else ""
        if current.valid_to is None:
            lines.append(f"- {attribute}: {current.value} (since {_day(current.valid_from)}{before})")
        else:
            lines.append(f"- {attribute}: no longer {current.value} (until {_day(current.valid_to)})")
    return "\n".join(fit_lines(PROFILE_HEADER, lines, max_tokens))
