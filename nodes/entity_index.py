"""A per-user word index over entity names, kept in the store, so lookups never scan all entities."""

from __future__ import annotations

import re
import unicodedata
from collections import Counter
from collections.abc import Iterable, Mapping
from typing import Any

from langgraph.store.base import BaseStore

from nodes.memory_batch import Address, MemoryBatch
from nodes.namespaces import entity_index_namespace

__all__ = [
    "FILLER_WORDS",
    "MAX_KEYS_PER_WORD",
    "MAX_QUERY_WORDS",
    "entity_keys_for",
    "index_entity",
    "keys_in",
    "name_words",
    "query_words",
    "stage_index",
    "stage_unindex",
    "unindex_entity",
    "word_addresses",
]

FILLER_WORDS = frozenset(
    {
        *("the", "a", "an", "and", "or", "of", "to", "in", "on", "at", "for", "with", "by", "from"),
        *("inc", "corp", "corporation", "co", "ltd", "llc", "gmbh", "plc"),
        *("i", "me", "my", "you", "your", "we", "our", "is", "are", "was", "be"),
    }
)
"""Words that name nothing on their own: indexing them would make every entity a candidate."""

MAX_KEYS_PER_WORD = 200
"""A word's document keeps the newest keys only, so one very common word cannot grow without bound."""

MAX_QUERY_WORDS = 64
"""Look-ups per query are bounded by this, never by how many entities the user has."""

_WORD = re.compile(r"\w[\w#+]*")


def name_words(text: str) -> set[str]:
    """NFKC-casefolded words of a name or message, without filler; short names ("UK", "Go") count."""
    folded = unicodedata.normalize("NFKC", text).casefold()
    return {word for word in _WORD.findall(folded) if word not in FILLER_WORDS}


def _keys_of(value: Mapping[str, Any] | None) -> list[str]:
    keys = value.get("keys") if value is not None else None
    return [key for key in keys if isinstance(key, str)] if isinstance(keys, list) else []


def _all_words(names: Iterable[str]) -> list[str]:
    return sorted(set().union(*(name_words(name) for name in names)))


def query_words(words: Iterable[str]) -> list[str]:
    """The index documents a look-up of `words` (words or phrases) reads: at most MAX_QUERY_WORDS."""
    wanted = _all_words(words)
    if len(wanted) > MAX_QUERY_WORDS:  # longest words are the most specific
        wanted = sorted(sorted(wanted, key=len, reverse=True)[:MAX_QUERY_WORDS])
    return wanted


def word_addresses(user_id: str, words: Iterable[str]) -> list[Address]:
    """Where the documents of `words` (already index words, e.g. from query_words) live."""
    namespace = entity_index_namespace(user_id)
    return [(namespace, word) for word in words]


async def _rewrite(batch: MemoryBatch, user_id: str, key: str, names: Iterable[str], *, add: bool) -> None:
    """Queue on `batch` the addition of `key` to (or its removal from) the documents of every word of
    `names`, writing only changes. One read round trip for the documents `batch` does not know yet.

    Two concurrent writers for one user can lose an index entry (read-modify-write); the entity then
    stays reachable through the recency path.
    """
    words = _all_words(names)
    namespace = entity_index_namespace(user_id)
    await batch.read(word_addresses(user_id, words))
    for word in words:
        keys = _keys_of(batch.value(namespace, word))
        if (key in keys) == add:
            continue  # already there / already gone: membership is all that is written
        kept = [*keys, key][-MAX_KEYS_PER_WORD:] if add else [k for k in keys if k != key]
        batch.put(namespace, word, {"keys": kept} if kept else None)  # None deletes the document


async def stage_index(batch: MemoryBatch, user_id: str, key: str, names: Iterable[str]) -> None:
    """index_entity, queued on `batch` (written by its flush)."""
    await _rewrite(batch, user_id, key, names, add=True)


async def stage_unindex(batch: MemoryBatch, user_id: str, key: str, names: Iterable[str]) -> None:
    """unindex_entity, queued on `batch` (written by its flush)."""
    await _rewrite(batch, user_id, key, names, add=False)


async def index_entity(store: BaseStore, user_id: str, key: str, names: Iterable[str]) -> None:
    """Make the entity stored under `key` findable by every word of `names` (value and aliases)."""
    batch = MemoryBatch(store)
    await _rewrite(batch, user_id, key, names, add=True)
    await batch.flush()


async def unindex_entity(store: BaseStore, user_id: str, key: str, names: Iterable[str]) -> None:
    """Forget `key` under the words of `names`, e.g. when the entity itself is forgotten."""
    batch = MemoryBatch(store)
    await _rewrite(batch, user_id, key, names, add=False)
    await batch.flush()


def _ranked_keys(batch: MemoryBatch, user_id: str, words: Iterable[str], *, limit: int = 50) -> list[str]:
    """entity_keys_for, answered from documents `batch` already read (query_words of `words`)."""
    namespace = entity_index_namespace(user_id)
    shared: Counter[str] = Counter()
    age: dict[str, int] = {}  # 0 = the last key added to a document
    for word in query_words(words):
        keys = _keys_of(batch.value(namespace, word))
        shared.update(keys)
        for position, key in enumerate(keys):
            age[key] = min(age.get(key, MAX_KEYS_PER_WORD), len(keys) - 1 - position)
    ranked = sorted(sorted(shared), key=lambda key: (-shared[key], age[key]))
    return ranked[: max(limit, 0)]


async def keys_in(batch: MemoryBatch, user_id: str, words: Iterable[str], *, limit: int = 50) -> list[str]:
    """entity_keys_for through `batch`: a round trip only for documents it does not know yet."""
    wanted = query_words(words)
    await batch.read(word_addresses(user_id, wanted))
    return _ranked_keys(batch, user_id, wanted, limit=limit)


async def entity_keys_for(
    store: BaseStore, user_id: str, words: Iterable[str], *, limit: int = 50
) -> list[str]:
    """Keys of entities whose indexed names share words with `words`, most shared words first.

    `words` may be words or whole phrases (they go through `name_words`). Among equals, keys added last
    to one of the words' documents come first; callers rank by their own signals anyway. One store
    round trip, at most MAX_QUERY_WORDS documents.
    """
    return await keys_in(MemoryBatch(store), user_id, words, limit=limit)
