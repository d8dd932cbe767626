"""Entity memory records, their store namespaces, and the pure merge rules behind idempotent upserts."""

from __future__ import annotations

import re
import unicodedata
from typing import Any

from pydantic import BaseModel, Field, ValidationError, field_validator

__all__ = [
    "ENTITY_TYPES",
    "EntityCandidate",
    "EntityRecord",
    "Extraction",
    "entity_key",
    "entity_namespace",
    "extracted_namespace",
    "merge_entity",
    "parse_candidates",
]

ENTITY_TYPES = ("PERSON", "ORG", "LOC", "DATE", "PRODUCT", "TECH", "EVENT", "OTHER")
MAX_VALUE_CHARS = 120
MAX_VALUE_WORDS = 8
MAX_ENTITIES_PER_TURN = 12
NOT_ENTITIES = frozenset(
    {"i", "me", "you", "we", "he", "she", "it", "they", "my", "your", "user", "assistant"}
)
MAX_CONTEXT_CHARS = 240
KEPT_CONTEXTS = 5
KEPT_SOURCE_IDS = 50


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
        if len(cleaned) > MAX_VALUE_CHARS or len(cleaned.split()) > MAX_VALUE_WORDS:
            raise ValueError(
                f"entity value longer than {MAX_VALUE_WORDS} words / {MAX_VALUE_CHARS} characters"
            )
        if cleaned.casefold().strip(".,;:!?") in NOT_ENTITIES:
            raise ValueError("a pronoun is not an entity")
        return cleaned

    @field_validator("context", mode="before")
    @classmethod
    def _short_context(cls, value: object) -> object:
        return " ".join(value.split())[:MAX_CONTEXT_CHARS] if isinstance(value, str) else value


class Extraction(BaseModel):
    """Entities mentioned in the newest turn of the conversation."""

    entities: list[EntityCandidate] = Field(default_factory=list, max_length=MAX_ENTITIES_PER_TURN)


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


def parse_candidates(arguments: Any) -> tuple[list[EntityCandidate], list[str]]:
    """Valid candidates from tool-call arguments, plus one note per entity dropped.

    Raises ValidationError when the arguments do not have the schema's shape at all, which is what
    earns the model its one repair attempt; single bad entities are dropped, not repaired.
    """
    if not isinstance(arguments, dict) or not isinstance(arguments.get("entities"), list):
        Extraction.model_validate(arguments if isinstance(arguments, dict) else {"entities": arguments})
        raise ValueError("tool arguments must be an object with an `entities` list")
    kept: list[EntityCandidate] = []
    dropped: list[str] = []
    for raw in arguments["entities"]:
        try:
            kept.append(EntityCandidate.model_validate(raw))
        except ValidationError as error:
            dropped.append(f"{str(raw)[:60]}: {error.errors()[0]['msg']}")
    return kept, dropped


def entity_namespace(user_id: str) -> tuple[str, ...]:
    return ("convomem", "users", user_id, "entities")


def extracted_namespace(user_id: str) -> tuple[str, ...]:
    """Markers of messages already extracted, so a re-run after a crash writes nothing twice."""
    return ("convomem", "users", user_id, "extracted")


_CORPORATE_SUFFIX = re.compile(r"\b(inc|corp|corporation|co|ltd|llc|gmbh|plc|company)\b\.?$")


def entity_key(entity_type: str, value: str) -> str:
    """Store key: the normalized value, so 'ACME Corp.' and 'Acme' land on one record per type."""
    folded = unicodedata.normalize("NFKC", value).casefold()
    words = re.sub(r"[^\w\s#+-]", " ", folded).split()
    text = " ".join(words)
    stripped = _CORPORATE_SUFFIX.sub("", text).strip() or text
    return f"{entity_type}:{stripped.replace(' ', '_')}"


def merge_entity(
    existing: EntityRecord | None,
    candidate: EntityCandidate,
    *,
    message_id: str,
    thread_id: str,
    now: str,
) -> EntityRecord | None:
    """The record after one more mention, or None when this message was already counted."""
    if existing is None:
        return EntityRecord(
            type=candidate.type,
            value=candidate.value,
            contexts=[candidate.context] if candidate.context else [],
            confidence=candidate.confidence,
            first_seen=now,
            last_seen=now,
            mentions=1,
            threads=[thread_id],
            source_message_ids=[message_id],
        )
    if message_id in existing.source_message_ids:
        return None
    aliases = list(existing.aliases)
    if candidate.value != existing.value and candidate.value not in aliases:
        aliases.append(candidate.value)
    contexts = [*existing.contexts, candidate.context] if candidate.context else list(existing.contexts)
    threads = existing.threads if thread_id in existing.threads else [*existing.threads, thread_id]
    return existing.model_copy(
        update={
            "aliases": aliases,
            "contexts": contexts[-KEPT_CONTEXTS:],
            "confidence": max(existing.confidence, candidate.confidence),
            "last_seen": now,
            "mentions": existing.mentions + 1,
            "threads": threads,
            "source_message_ids": [*existing.source_message_ids, message_id][-KEPT_SOURCE_IDS:],
        }
    )
