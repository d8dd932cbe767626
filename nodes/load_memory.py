"""load_memory: pick what the assistant remembers about this user for the current turn (no model call)."""

from __future__ import annotations

import asyncio
import logging
from dataclasses import dataclass, field
from typing import Any

from langgraph.runtime import Runtime
from langgraph.store.base import SearchOp
from pydantic import ValidationError

from nodes.config import DEFAULT_USER_ID
from nodes.entity_index import keys_in, name_words, query_words, word_addresses
from nodes.memory import EntityRecord
from nodes.memory_batch import MemoryBatch
from nodes.memory_text import mentioned_text, profile_sentences
from nodes.namespaces import entity_namespace
from nodes.profile import UserProfile, fit_lines, format_profile, profile_address, read_profile, text_tokens
from nodes.prompts import MEMORY_HEADER
from nodes.recall import RECALL_SHARE, SEARCH_WIDTH, Passage, PassageSearch, passage_trace, select_passages
from nodes.state import Context, Node, State, Update, authenticated_user, newest_human
from nodes.tokens import text_of

__all__ = ["PROFILE_SHARE", "Candidate", "format_memory", "make_load_memory", "rank_entities"]

_log = logging.getLogger("convomem.memory")

PROFILE_SHARE = 2
"""The profile may take at most 1/2 of memory_tokens when entities compete for the rest."""
MATCHED = 50
"""Entities looked up through the word index per turn."""
RECENT = 20
"""Most recently updated entities considered whatever the message says (the conversation's thread)."""
SEMANTIC = 10
"""Entities nearest by embedding, when the store has a vector index and `semantic` is on."""


@dataclass
class Candidate:
    """An entity that may enter the prompt, and why: shown in `memory_trace`."""

    key: str
    record: EntityRecord
    name_matches: list[str] = field(default_factory=list)
    context_matches: list[str] = field(default_factory=list)
    score: float | None = None
    recent: bool = False

    def rank(self) -> tuple[int, int, float, int, str]:
        """Name words shared with the message, then context words, semantic score, mentions, recency."""
        return (
            len(self.name_matches),
            len(self.context_matches),
            self.score or 0.0,
            self.record.mentions,
            self.record.last_seen,
        )

    def trace(self) -> dict[str, Any]:
        """JSON-friendly reasons for state's `memory_trace`: why memory said what it said."""
        why: list[str] = []
        if self.name_matches:
            why.append("name matches: " + ", ".join(self.name_matches))
        if self.context_matches:
            why.append("context matches: " + ", ".join(self.context_matches))
        if self.score is not None:
            why.append(f"semantic score: {self.score:.3f}")
        if self.recent:
            why.append("recent")
        return {"key": self.key, "value": self.record.value, "why": why or ["word index"]}


def _candidate(key: str, record: EntityRecord, query: set[str]) -> Candidate:
    names = name_words(" ".join([record.value, *record.aliases]))
    contexts = name_words(" ".join(record.contexts)) - names
    return Candidate(
        key=key, record=record, name_matches=sorted(names & query), context_matches=sorted(contexts & query)
    )


def _ranked(candidates: list[Candidate]) -> list[Candidate]:
    return sorted(candidates, key=Candidate.rank, reverse=True)


def rank_entities(records: list[EntityRecord], query: str) -> list[EntityRecord]:
    """Most relevant first: name words shared with `query` (short names like "UK" count, filler words
    do not), then context words, then mentions, then recency."""
    words = name_words(query)
    return [c.record for c in _ranked([_candidate(r.value, r, words) for r in records])]


def format_memory(records: list[EntityRecord], max_tokens: int) -> tuple[str, list[str]]:
    """Memory lines within `max_tokens`, and the values that made it in (the leading records)."""
    lines = []
    for record in records:
        context = f" — {record.contexts[-1]}" if record.contexts else ""
        lines.append(f"- {record.value} ({record.type.lower()}, mentioned {record.mentions}x){context}")
    kept = fit_lines(MEMORY_HEADER, lines, max_tokens)
    return "\n".join(kept), [record.value for record in records[: max(len(kept) - 1, 0)]]


async def _gather(
    memory: MemoryBatch, user_id: str, text: str, *, semantic: bool
) -> tuple[list[Candidate], UserProfile | None]:
    """The profile, entities sharing words with the message, the most recently updated ones, and
    (optionally) the closest in meaning: one round trip for the profile, the index and the searches,
    one more only for matched entities neither search brought, whatever the user's entity count."""
    namespace = entity_namespace(user_id)
    query = name_words(text)
    close = SearchOp(namespace, query=text, limit=SEMANTIC) if semantic and text.strip() else None
    await memory.read(
        [profile_address(user_id), *word_addresses(user_id, query_words(query))],
        [SearchOp(namespace, limit=RECENT), *([close] if close else [])],
    )
    found: dict[str, Candidate] = {}

    def add(key: str, value: Any) -> Candidate | None:
        if key not in found:
            try:
                found[key] = _candidate(key, EntityRecord.model_validate(value), query)
            except ValidationError:
                _log.warning("entity %s is unreadable and is left out of memory", key)
        return found.get(key)

    for item in await memory.search(namespace, None, RECENT):
        if candidate := add(item.key, item.value):
            candidate.recent = True
    for item in await memory.search(namespace, text, SEMANTIC) if close else []:
        if item.score is not None and (candidate := add(item.key, item.value)):
            candidate.score = item.score
    missing = [key for key in await keys_in(memory, user_id, query, limit=MATCHED) if key not in found]
    await memory.read((namespace, key) for key in missing)
    for key in missing:
        value = memory.value(namespace, key)
        if value is not None:  # a stale index entry of a forgotten entity reads as None
            add(key, value)
    return list(found.values()), read_profile(memory.value(*profile_address(user_id)), user_id)


def _join(*sections: str) -> str:
    return "\n\n".join(section for section in sections if section)


async def _recall(
    search: PassageSearch | None, user_id: str, thread_id: str | None, text: str, wanted: int
) -> list[Passage]:
    """Candidate passages of the user's other conversations (more than wanted: some may be duplicates)."""
    if search is None or wanted <= 0 or not text.strip():
        return []
    try:
        return await search(user_id, thread_id, text, wanted * SEARCH_WIDTH)
    except Exception as error:  # recall is a bonus: a failing search costs the passages, never the turn
        _log.warning("recall across conversations skipped: %s", error)
        return []


def _known_texts(state: State) -> list[str]:
    """What the prompt already holds besides memory: the working set and the running summary."""
    return [text_of(m) for m in state["messages"]] + [state.get("summary") or ""]


def make_load_memory(
    *,
    memory_tokens: int,
    default_user_id: str = DEFAULT_USER_ID,
    semantic: bool = False,
    style: str = "list",
    passages: PassageSearch | None = None,
    recall_passages: int = 0,
) -> Node:
    """`semantic=True` when the store has a vector index: the closest entities by meaning join too.
    `style` "sentences" writes memory as plain sentences to the user (nodes.memory_text), which a small
    model repeats back; "list" is the labelled list with contexts and dates. With `passages`, up to
    `recall_passages` messages of the user's other conversations that match the newest message come
    too, within 1/RECALL_SHARE of the budget.

    The turn's user is the authenticated caller, else the run's context, else the user of the thread's
    previous turn (state), else `default_user_id`; it is kept in state so every later node of the turn,
    and a resume without context, acts for the same user."""

    async def load_memory(state: State, runtime: Runtime[Context]) -> Update:
        """Memory for respond: the profile, then the entities that matter to the newest message, within
        memory_tokens; `memory_trace` says why each one was picked."""
        user_id = (
            authenticated_user(runtime) or runtime.context.user_id or state.get("user_id") or default_user_id
        )
        turn = {"user_id": user_id, "review_memory": bool(runtime.context.review_memory)}
        if runtime.store is None or memory_tokens <= 0:
            return {**turn, "memory_context": "", "memory_keys": [], "memory_trace": []}
        latest = newest_human(state["messages"])
        text = text_of(latest) if latest else ""
        thread_id = runtime.execution_info.thread_id if runtime.execution_info else None
        (gathered, profile), found = await asyncio.gather(
            _gather(MemoryBatch(runtime.store), user_id, text, semantic=semantic),
            _recall(passages, user_id, thread_id, text, recall_passages),
        )
        recalled_text, recalled = select_passages(
            found,
            known=_known_texts(state),
            wanted=recall_passages,
            max_tokens=memory_tokens // RECALL_SHARE,
        )
        budget = memory_tokens - text_tokens(recalled_text + "\n\n") if recalled_text else memory_tokens
        candidates = _ranked(gathered)
        share = budget // PROFILE_SHARE if candidates else budget
        as_sentences = style == "sentences"
        profile_text = (
            (profile_sentences if as_sentences else format_profile)(profile, share) if profile else ""
        )
        room = budget - text_tokens(profile_text + "\n\n") if profile_text else budget
        records = [c.record for c in candidates]
        memory_text, values = (mentioned_text if as_sentences else format_memory)(records, room)
        picked = candidates[: len(values)]
        trace = (
            [{"key": "profile", "value": profile.name or "", "why": ["profile"]}]
            if profile and profile_text
            else []
        )
        trace += [candidate.trace() for candidate in picked]
        trace += [passage_trace(passage) for passage in recalled]
        _log.debug("memory for %s: %s", user_id, trace)
        return {
            **turn,
            "memory_context": _join(profile_text, memory_text, recalled_text),
            "memory_keys": values,
            "memory_trace": trace,
        }

    return load_memory
