"""A per-user word index over entity names, kept in the store, so lookups never scan all entities."""

from __future__ import annotations

import re
import unicodedata
from collections import Counter
from collections.abc import Iterable
from typing import Any

from langgraph.store.base import BaseStore, GetOp, Item, PutOp

from nodes.namespaces import entity_index_namespace

__all__ = [
    "FILLER_WORDS",
    "MAX_KEYS_PER_WORD",
    "MAX_QUERY_WORDS",
    "entity_keys_for",
    "index_entity",
    "name_words",
    "unindex_entity",
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


def _keys_of(item: Item | None) -> list[str]:
    keys = item.value.get("keys") if item is not None else None
    return [key for key in keys if isinstance(key, str)] if isinstance(keys, list) else []


async def _word_documents(store: BaseStore, user_id: str, words: list[str]) -> list[list[str]]:
    """The key lists of `words`, read in one round trip."""
    namespace = entity_index_namespace(user_id)
    items = await store.abatch([GetOp(namespace, word) for word in words]) if words else []
    return [_keys_of(item if isinstance(item, Item) else None) for item in items]


def _all_words(names: Iterable[str]) -> list[str]:
    return sorted(set().union(*(name_words(name) for name in names)))


async def _rewrite(store: BaseStore, user_id: str, key: str, names: Iterable[str], *, add: bool) -> None:
    """Add `key` to (or remove it from) the documents of every word of `names`, writing only changes.

    Two round trips whatever the number of words. Two concurrent writers for one user can lose an
    index entry (read-modify-write); the entity then stays reachable through the recency path.
    """
    words = _all_words(names)
    namespace = entity_index_namespace(user_id)
    writes: list[PutOp] = []
    for word, keys in zip(words, await _word_documents(store, user_id, words), strict=True):
        if (key in keys) == add:
            continue  # already there / already gone: membership is all that is written
        kept = [*keys, key][-MAX_KEYS_PER_WORD:] if add else [k for k in keys if k != key]
        value: dict[str, Any] | None = {"keys": kept} if kept else None  # None deletes the document
        writes.append(PutOp(namespace, word, value, index=False))
    if writes:
        await store.abatch(writes)


async def index_entity(store: BaseStore, user_id: str, key: str, names: Iterable[str]) -> None:
    """Make the entity stored under `key` findable by every word of `names` (value and aliases)."""
    await _rewrite(store, user_id, key, names, add=True)


async def unindex_entity(store: BaseStore, user_id: str, key: str, names: Iterable[str]) -> None:
    """Forget `key` under the words of `names`, e.g. when the entity itself is forgotten."""
    await _rewrite(store, user_id, key, names, add=False)


async def entity_keys_for(
    store: BaseStore, user_id: str, words: Iterable[str], *, limit: int = 50
) -> list[str]:
    """Keys of entities whose indexed names share words with `words`, most shared words first.

    `words` may be words or whole phrases (they go through `name_words`). Among equals, keys added last
    to one of the words' documents come first; callers rank by their own signals anyway. One store
    round trip, at most MAX_QUERY_WORDS documents.
    """
    wanted = _all_words(words)
    if len(wanted) > MAX_QUERY_WORDS:  # longest words are the most specific
        wanted = sorted(sorted(wanted, key=len, reverse=True)[:MAX_QUERY_WORDS])
    shared: Counter[str] = Counter()
    age: dict[str, int] = {}  # 0 = the last key added to a document
    for keys in await _word_documents(store, user_id, wanted):
        shared.update(keys)
        for position, key in enumerate(keys):
            age[key] = min(age.get(key, MAX_KEYS_PER_WORD), len(keys) - 1 - position)
    ranked = sorted(sorted(shared), key=lambda key: (-shared[key], age[key]))
    return ranked[: max(limit, 0)]
