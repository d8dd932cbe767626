"""Entity memory records, their store namespaces, and the pure merge rules behind idempotent upserts."""

from __future__ import annotations

import re
import unicodedata
from typing import Any

from langgraph.store.base import Item
from pydantic import BaseModel, Field, ValidationError, field_validator

from nodes.grounding import grounded, junk_reason
from nodes.profile import ProfileUpdate, ground_profile

__all__ = [
    "ENTITY_TYPES",
    "EntityCandidate",
    "EntityRecord",
    "Extraction",
    "edited_entity",
    "entity_key",
    "merge_entity",
    "name_forms",
    "normalized_name",
    "parse_candidates",
    "parse_profile",
    "read_record",
    "record_of",
    "with_alias",
]

ENTITY_TYPES = ("PERSON", "ORG", "LOC", "DATE", "PRODUCT", "TECH", "EVENT", "OTHER")
MAX_VALUE_CHARS = 120
MAX_ENTITIES_PER_TURN = 12
MAX_CONTEXT_CHARS = 240
KEPT_CONTEXTS = 5
KEPT_SOURCE_IDS = 50
KEPT_ALIASES = 20
MAX_RAW_PROFILE_CHARS = 200
"""A profile string this long is garbage, not a value to cut down and keep."""


class EntityCandidate(BaseModel):
    """One entity as the model proposes it."""

    # Length limits are part of the tool schema: a grammar-constrained local model (llama.cpp) must be
    # able to finish its JSON; without them a tiny model can write one string forever.
    type: str = Field(max_length=16, description="One of " + ", ".join(ENTITY_TYPES))
    value: str = Field(max_length=MAX_VALUE_CHARS)  # no description: small models copy it as a value
    context: str = Field(default="", max_length=MAX_CONTEXT_CHARS)
    confidence: float = Field(default=0.8, ge=0.0, le=1.0)

    @field_validator("type")
    @classmethod
    def _known_type(cls, value: str) -> str:
        upper = value.strip().upper()
        return upper if upper in ENTITY_TYPES else "OTHER"

    @field_validator("value")
    @classmethod
    def _sane_value(cls, value: str) -> str:
        cleaned = " ".join(value.split())
        if not cleaned:
            raise ValueError("empty entity value")
        if len(cleaned) > MAX_VALUE_CHARS:
            raise ValueError(f"entity value longer than {MAX_VALUE_CHARS} characters")
        if reason := junk_reason(cleaned):
            raise ValueError(f"not an entity: {reason}")
        return cleaned

    @field_validator("context", mode="before")
    @classmethod
    def _short_context(cls, value: object) -> object:
        return " ".join(value.split())[:MAX_CONTEXT_CHARS] if isinstance(value, str) else value


class Extraction(BaseModel):
    """Entities mentioned in the newest turn of the conversation, and what it says about the user."""

    # Required: under a JSON-schema grammar an optional list lets a small model answer `{}` every time.
    entities: list[EntityCandidate] = Field(max_length=MAX_ENTITIES_PER_TURN)
    profile: ProfileUpdate | None = None


class EntityRecord(BaseModel):
    """What the store keeps per entity and user."""

    type: str
    value: str
    aliases: list[str] = Field(default_factory=list)
    contexts: list[str] = Field(default_factory=list)
    confidence: float = 0.0
    first_seen: str
    last_seen: str
    mentions: int = 0
    threads: list[str] = Field(default_factory=list)
    source_message_ids: list[str] = Field(default_factory=list)


def parse_candidates(arguments: Any, source: str | None = None) -> tuple[list[EntityCandidate], list[str]]:
    """Valid candidates from tool-call arguments, plus one note per entity dropped.

    Raises ValidationError when the arguments do not have the schema's shape at all, which is what
    earns the model its one repair attempt; single bad entities are dropped, not repaired. With
    `source` (the user's words the model read), a value the user did not write is dropped too.
    """
    if not isinstance(arguments, dict) or not isinstance(arguments.get("entities"), list):
        Extraction.model_validate(arguments if isinstance(arguments, dict) else {"entities": arguments})
        raise ValueError("tool arguments must be an object with an `entities` list")
    kept: list[EntityCandidate] = []
    dropped: list[str] = []
    for raw in arguments["entities"]:
        try:
            candidate = EntityCandidate.model_validate(raw)
        except ValidationError as error:
            dropped.append(f"{str(raw)[:60]}: {error.errors()[0]['msg']}")
            continue
        if source is not None and not grounded(candidate.value, source):
            dropped.append(f"{candidate.value[:60]}: not in the user's words")
            continue
        kept.append(candidate)
    return kept, dropped


def read_record(item: object) -> EntityRecord | None:
    """The record a store item holds; None for no item or an unreadable one (it names nothing)."""
    return record_of(item.value) if isinstance(item, Item) else None


def record_of(value: object) -> EntityRecord | None:
    """The record a stored value holds; None for no value or an unreadable one."""
    if value is None:
        return None
    try:
        return EntityRecord.model_validate(value)
    except ValidationError:
        return None


def _longest_text(value: object) -> int:
    if isinstance(value, str):
        return len(value)
    if isinstance(value, dict):
        value = list(value.values())
    return max((_longest_text(item) for item in value), default=0) if isinstance(value, list) else 0


def parse_profile(raw: Any, source: str | None = None) -> ProfileUpdate | None:
    """The profile part of tool-call arguments; None when absent or empty.

    Raises ValueError (ValidationError included) for a profile that is not usable, which earns the
    repair attempt. A string far beyond every bound is refused rather than cut: it is a runaway
    generation, and its first characters are not a name or a fact. With `source` (the user's words),
    only what the user said about themselves is kept (nodes.profile.ground_profile).
    """
    if raw is None or raw == {}:
        return None
    if _longest_text(raw) > MAX_RAW_PROFILE_CHARS:
        raise ValueError(f"a profile value is longer than {MAX_RAW_PROFILE_CHARS} characters")
    profile = ProfileUpdate.model_validate(raw)
    if source is not None:
        profile = ground_profile(profile, source)
    return profile if profile.model_dump(exclude_defaults=True) else None


_CORPORATE_SUFFIX = re.compile(r"\b(inc|corp|corporation|co|ltd|llc|gmbh|plc|company)\b\.?$")


def normalized_name(value: str) -> str:
    """What resolution compares: NFKC, casefolded, punctuation and a corporate suffix removed.

    'ACME Corp.', 'Acme, Inc.' and 'Acme Corporation' all become 'acme'; a name that is only a suffix
    ('Company') stays itself.
    """
    folded = unicodedata.normalize("NFKC", value).casefold()
    text = " ".join(re.sub(r"[^\w\s#+-]", " ", folded).split())
    return _CORPORATE_SUFFIX.sub("", text).strip() or text


def name_forms(record: EntityRecord) -> set[str]:
    """The normalized names a record answers to: its value and every alias."""
    return {normalized_name(name) for name in (record.value, *record.aliases)}


def entity_key(entity_type: str, value: str) -> str:
    """Store key of a new entity: its type when first seen and its normalized value.

    The key is fixed at creation and never moves: resolution finds records by name (exact key, then
    the word index), so a later alias or a refined type does not change where the record lives. The
    type stays in the key because two entities may share a name (Jordan the person, Jordan the
    country) and both need a place.
    """
    return f"{entity_type}:{normalized_name(value).replace(' ', '_')}"


def _spelling(name: str) -> str:
    """A name as alias bookkeeping compares it: case and spacing do not make a new spelling."""
    return " ".join(name.split()).casefold()


def _with_alias(aliases: list[str], value: str, canonical: str) -> list[str]:
    """Aliases after seeing `value`; spellings differing only in case or spacing are not new."""
    known = {_spelling(name) for name in (canonical, *aliases)}
    if _spelling(value) in known:
        return aliases
    return [*aliases, value][-KEPT_ALIASES:]


def with_alias(record: EntityRecord, value: str) -> EntityRecord | None:
    """The record with one more surface form, or None when it already knows it.

    For a second spelling of one entity in the same message: the message is counted once, but
    both spellings are remembered.
    """
    aliases = _with_alias(record.aliases, value, record.value)
    return None if aliases == record.aliases else record.model_copy(update={"aliases": aliases})


def merge_entity(
    existing: EntityRecord | None,
    candidate: EntityCandidate,
    *,
    message_id: str,
    thread_id: str | None,
    now: str,
) -> EntityRecord | None:
    """The record after one more mention, or None when this message was already counted.

    The first spelling stays the value; others become aliases. A record first typed OTHER takes the
    first specific type proposed for it (its key does not change). `thread_id` None (an entity a person
    added by hand) counts the mention in no conversation.
    """
    seen_in = [] if thread_id is None else [thread_id]
    if existing is None:
        return EntityRecord(
            type=candidate.type,
            value=candidate.value,
            contexts=[candidate.context] if candidate.context else [],
            confidence=candidate.confidence,
            first_seen=now,
            last_seen=now,
            mentions=1,
            threads=seen_in,
            source_message_ids=[message_id],
        )
    if message_id in existing.source_message_ids:
        return None
    aliases = _with_alias(existing.aliases, candidate.value, existing.value)
    contexts = [*existing.contexts, candidate.context] if candidate.context else list(existing.contexts)
    threads = [*existing.threads, *(t for t in seen_in if t not in existing.threads)]
    return existing.model_copy(
        update={
            "type": candidate.type if existing.type == "OTHER" else existing.type,
            "aliases": aliases,
            "contexts": contexts[-KEPT_CONTEXTS:],
            "confidence": max(existing.confidence, candidate.confidence),
            "last_seen": now,
            "mentions": existing.mentions + 1,
            "threads": threads,
            "source_message_ids": [*existing.source_message_ids, message_id][-KEPT_SOURCE_IDS:],
        }
    )


def edited_entity(record: EntityRecord, *, entity_type: str, value: str, contexts: list[str]) -> EntityRecord:
    """The record after a person's edit (values already validated): a new value keeps the old one as an
    alias and leaves the aliases itself; mentions, first/last seen, threads and source ids stay."""
    aliases = record.aliases
    if value != record.value:
        aliases = [a for a in _with_alias(aliases, record.value, value) if _spelling(a) != _spelling(value)]
    return record.model_copy(
        update={
            "type": entity_type,
            "value": value,
            "aliases": aliases,
            "contexts": contexts[-KEPT_CONTEXTS:],
        }
    )
