"""The Python API's memory half: entities, the profile, the transcript, search, statistics, forgetting."""

from __future__ import annotations

from dataclasses import dataclass

from checkpoint.ids import validate_id
from checkpoint.persistence import Persistence
from checkpoint.threads import require_thread
from checkpoint.transcript import (
    ForgetReport,
    SearchHit,
    TranscriptArchive,
    TranscriptEntry,
    UserStats,
    forget_user,
    read_messages,
    read_transcript,
    search_transcript,
    user_stats,
)
from graphs.memory_edit import MemoryEdits, checked_entity_name, known_entity_type, unknown_entity, utc_clock
from graphs.settings import Settings
from nodes.entity_lookup import find_entity, forget_entity
from nodes.memory import EntityRecord
from nodes.namespaces import entity_namespace
from nodes.profile import UserProfile, load_profile
from nodes.state import Clock

__all__ = ["EntityMentions", "MemoryApi"]


@dataclass(frozen=True)
class EntityMentions:
    """One entity and every archived message that named it, across threads."""

    record: EntityRecord
    mentions: list[TranscriptEntry]


class MemoryApi(MemoryEdits):
    """What is remembered about users, read and edited through the same rules as the graph uses."""

    def __init__(
        self,
        persistence: Persistence,
        settings: Settings,
        archive: TranscriptArchive,
        *,
        clock: Clock = utc_clock,
    ) -> None:
        self.persistence = persistence
        self.settings = settings
        self.archive = archive
        """Where reduce_history keeps every message (the graph's), and the language search parses with."""
        self.clock = clock

    async def entities(
        self, user_id: str | None = None, *, entity_type: str | None = None, limit: int = 1000
    ) -> list[EntityRecord]:
        """The user's entities, most mentioned first; `entity_type` (PERSON, ORG, ...) filters."""
        namespace = entity_namespace(self._user(user_id))
        wanted = known_entity_type(entity_type) if entity_type else None
        found = {"type": wanted} if wanted else None
        items = await self.persistence.store.asearch(namespace, filter=found, limit=limit)
        records = [EntityRecord.model_validate(item.value) for item in items]
        return sorted(records, key=lambda r: (-r.mentions, r.value.casefold()))

    async def entity(self, name: str, user_id: str | None = None) -> EntityMentions:
        """The entity called `name` (value, alias or a close spelling) and the messages that named it."""
        user = self._user(user_id)
        found = await find_entity(self.persistence.store, user, checked_entity_name(name))
        if found is None:
            raise unknown_entity(name, user)
        record = found[1]
        mentions = await read_messages(self.persistence.pool, user, record.source_message_ids)
        return EntityMentions(record, mentions)

    async def forget_entity(self, name: str, user_id: str | None = None) -> EntityRecord:
        """Delete one remembered entity (the rest of the user's memory stays)."""
        user = self._user(user_id)
        forgotten = await forget_entity(self.persistence.store, user, checked_entity_name(name))
        if forgotten is None:
            raise unknown_entity(name, user)
        return forgotten

    async def profile(self, user_id: str | None = None) -> UserProfile | None:
        """The user's profile document (name, language, style, interests, facts with their history)."""
        return await load_profile(self.persistence.store, self._user(user_id))

    async def transcript(self, thread_id: str) -> list[TranscriptEntry]:
        """Every message the thread ever had, oldest first, including those folded into its summary;
        UnknownThread for a thread that never existed."""
        await require_thread(self.persistence.pool, validate_id(thread_id))
        return await read_transcript(self.persistence.pool, thread_id)

    async def search(
        self, query: str, *, user_id: str | None = None, thread_id: str | None = None, limit: int = 20
    ) -> list[SearchHit]:
        """Full-text search over every archived message (web-search syntax), best match first."""
        return await search_transcript(
            self.persistence.pool,
            query,
            language=self.archive.language,
            user_id=user_id,
            thread_id=thread_id,
            limit=limit,
        )

    async def stats(self, user_id: str | None = None) -> UserStats:
        """Conversations, messages, tokens and remembered entities of a user (default: the configured)."""
        return await user_stats(self.persistence.pool, user_id or self.settings.user_id)

    async def forget(self, user_id: str) -> ForgetReport:
        """Delete a user's transcript, memories and threads; ThreadBusy (nothing deleted) while one runs."""
        return await forget_user(self.persistence.pool, self.persistence.checkpointer, user_id)
