"""Editing memory by hand (API, CLI, web console): add or edit an entity, set or unset a profile fact.

The same rules as the graph's: values validated by the models extraction uses, entities resolved and
merged by its store path (nodes.extract_entities.store_entities), facts versioned by its profile merge.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Literal

from pydantic import ValidationError

from checkpoint.ids import validate_user_id
from checkpoint.persistence import Persistence
from graphs.settings import Settings
from nodes.entity_lookup import find_entity, replace_entity
from nodes.errors import InvalidInput
from nodes.extract_entities import ENTITY_INDEX_FIELDS, store_entities
from nodes.memory import (
    ENTITY_TYPES,
    KEPT_CONTEXTS,
    MAX_CONTEXT_CHARS,
    MAX_VALUE_CHARS,
    EntityCandidate,
    EntityRecord,
    edited_entity,
    entity_key,
    normalized_name,
    read_record,
)
from nodes.namespaces import entity_namespace
from nodes.profile import (
    FACT_ATTRIBUTE_CHARS,
    FACT_VALUE_CHARS,
    FactStatement,
    ProfileUpdate,
    UserProfile,
    close_fact,
    fact_attribute,
    load_profile,
    save_profile,
    update_profile,
)
from nodes.state import Clock

__all__ = [
    "MANUAL_SOURCE",
    "MemoryEdits",
    "checked_entity_name",
    "known_entity_type",
    "unknown_entity",
    "utc_clock",
]

MANUAL_SOURCE = "manual"
"""Prefix of the source id a hand edit records (`manual:<utc time>`) where extraction records a message id."""

NOTHING_TO_CHANGE = "Nothing to change: give a new type, value or contexts."
PLAIN_ATTRIBUTE = "Give the fact's attribute in plain words, e.g. lives_in."


def utc_clock() -> datetime:
    """MemoryApi's default clock (graphs.conversation has the graph's; importing it would load the graph)."""
    return datetime.now(UTC)


def known_entity_type(entity_type: str) -> str:
    """PERSON, ORG, ... in any case; InvalidInput names the choices (a person's typo is not OTHER)."""
    wanted = entity_type.strip().upper()
    if wanted not in ENTITY_TYPES:
        raise InvalidInput(f"Unknown entity type {entity_type!r}: use one of {', '.join(ENTITY_TYPES)}.")
    return wanted


def checked_entity_name(name: str) -> str:
    if not name.strip() or len(name) > MAX_VALUE_CHARS:
        raise InvalidInput(f"Give an entity name of 1-{MAX_VALUE_CHARS} characters.")
    return name


def unknown_entity(name: str, user: str) -> InvalidInput:
    return InvalidInput(f"Nothing remembered as {name!r} for {user!r}: `convomem entities` lists them.")


def _context(text: str) -> str:
    cleaned = " ".join(text.split())
    if len(cleaned) > MAX_CONTEXT_CHARS:
        raise InvalidInput(f"A context is at most {MAX_CONTEXT_CHARS} characters, not {len(cleaned)}.")
    return cleaned


def _candidate(entity_type: str, value: str, context: str = "") -> EntityCandidate:
    """The entity as extraction would propose it, certain (a person said so); InvalidInput when not one."""
    try:
        return EntityCandidate(
            type=known_entity_type(entity_type), value=value, context=_context(context), confidence=1.0
        )
    except ValidationError as error:
        reason = str(error.errors()[0]["msg"]).removeprefix("Value error, ")
        raise InvalidInput(f"Cannot remember {value[:60]!r} as an entity: {reason}.") from None


def _contexts(contexts: list[str]) -> list[str]:
    kept = [cleaned for text in contexts if (cleaned := _context(text))]
    if len(kept) > KEPT_CONTEXTS:
        raise InvalidInput(f"An entity keeps at most {KEPT_CONTEXTS} contexts, not {len(kept)}.")
    return kept


def _fact(attribute: str, value: str) -> FactStatement:
    """The fact as extraction would state it; longer than the limits is refused, not cut."""
    if (
        len(" ".join(attribute.split())) > FACT_ATTRIBUTE_CHARS
        or len(" ".join(value.split())) > FACT_VALUE_CHARS
    ):
        raise InvalidInput(
            f"A fact is an attribute of at most {FACT_ATTRIBUTE_CHARS} characters and a value of at most "
            f"{FACT_VALUE_CHARS}."
        )
    try:
        return FactStatement(attribute=attribute, value=value)
    except ValidationError as error:
        field = error.errors()[0]["loc"][0]
        raise InvalidInput(
            PLAIN_ATTRIBUTE
            if field == "attribute"
            else f"Give the fact's value in plain words (for {fact_attribute(attribute)!r})."
        ) from None


class MemoryEdits:
    """The editing half of MemoryApi; every refusal is one InvalidInput line, raised before any write."""

    persistence: Persistence
    settings: Settings
    clock: Clock
    """What stamps an edit's time (first/last seen, a fact's validity): MemoryApi's `clock`."""

    def _user(self, user_id: str | None) -> str:
        return validate_user_id(user_id or self.settings.user_id)

    def _now(self) -> str:
        return self.clock().isoformat()

    @property
    def _index(self) -> list[str] | Literal[False]:
        return ENTITY_INDEX_FIELDS if self.settings.semantic_memory else False

    async def add_entity(
        self, entity_type: str, value: str, *, context: str = "", user_id: str | None = None
    ) -> EntityRecord:
        """Remember an entity by hand: resolved and merged like an extracted one (an existing record of
        the same name counts one more mention and keeps the spelling as an alias), findable at once."""
        user = self._user(user_id)
        candidate = _candidate(entity_type, value, context)
        now = self._now()
        store = self.persistence.store
        stored = await store_entities(
            store,
            user,
            [candidate.model_dump()],
            message_ids=[f"{MANUAL_SOURCE}:{now}"],
            thread_id=None,
            now=now,
            semantic=self.settings.semantic_memory,
        )
        record = read_record(await store.aget(entity_namespace(user), stored.keys[0]))
        if record is None:  # deleted by someone else between the two statements
            raise InvalidInput(f"{value!r} was forgotten while it was being remembered: add it again.")
        return record

    async def edit_entity(
        self,
        name: str,
        *,
        entity_type: str | None = None,
        value: str | None = None,
        contexts: list[str] | None = None,
        user_id: str | None = None,
    ) -> EntityRecord:
        """Change an entity's type, value (the old one stays an alias) or contexts; its mentions, first
        sighting, threads and sources stay. A new name or type moves the record to its new key."""
        if entity_type is None and value is None and contexts is None:
            raise InvalidInput(NOTHING_TO_CHANGE)
        user = self._user(user_id)
        store = self.persistence.store
        found = await find_entity(store, user, checked_entity_name(name))
        if found is None:
            raise unknown_entity(name, user)
        key, record = found
        new_type = record.type if entity_type is None else known_entity_type(entity_type)
        new_value = record.value if value is None else _candidate(new_type, value).value
        edited = edited_entity(
            record,
            entity_type=new_type,
            value=new_value,
            contexts=record.contexts if contexts is None else _contexts(contexts),
        )
        renamed = new_type != record.type or normalized_name(new_value) != normalized_name(record.value)
        new_key = entity_key(new_type, new_value) if renamed else key
        if renamed:
            await self._refuse_taken(user, key, new_key, new_type, new_value)
        await replace_entity(store, user, (key, record), (new_key, edited), index=self._index)
        return edited

    async def _refuse_taken(self, user: str, key: str, new_key: str, new_type: str, new_value: str) -> None:
        """A rename must not make two records of one entity: its key or exact name must be free."""
        store = self.persistence.store
        taken = new_key != key and read_record(await store.aget(entity_namespace(user), new_key)) is not None
        other = await find_entity(store, user, new_value, look_alike=False)
        if taken or (other is not None and other[0] != key and other[1].type == new_type):
            raise InvalidInput(
                f"{new_type} {new_value!r} is already remembered as another entity: edit or forget that one."
            )

    async def set_fact(self, attribute: str, value: str, *, user_id: str | None = None) -> UserProfile:
        """Set a profile fact: the value holding now closes and the new one opens (the history stays);
        setting the value that already holds changes nothing."""
        user = self._user(user_id)
        update = ProfileUpdate(facts=[_fact(attribute, value)])
        now = self._now()
        store = self.persistence.store
        await update_profile(store, user, update, message_id=f"{MANUAL_SOURCE}:{now}", now=now)
        return await load_profile(store, user) or UserProfile()

    async def unset_fact(self, attribute: str, *, user_id: str | None = None) -> UserProfile:
        """End a profile fact: its current value closes (valid_to now); its history stays."""
        user = self._user(user_id)
        wanted = fact_attribute(attribute)
        if not wanted:
            raise InvalidInput(PLAIN_ATTRIBUTE)
        store = self.persistence.store
        profile = await load_profile(store, user)
        now = self._now()
        closed = (
            close_fact(profile, wanted, message_id=f"{MANUAL_SOURCE}:{now}", now=now) if profile else None
        )
        if closed is None:
            raise InvalidInput(f"No fact {wanted!r} holds now for {user!r}: `convomem profile` lists them.")
        await save_profile(store, user, closed)
        return closed
