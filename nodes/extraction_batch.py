"""Which human messages an extraction covers: not yet extracted, bounded, and worth a model call."""

from __future__ import annotations

from collections.abc import Sequence

from langchain_core.messages import AnyMessage, HumanMessage
from langgraph.store.base import BaseStore, GetOp

from nodes.entity_index import entity_keys_for, name_words
from nodes.memory import read_record
from nodes.namespaces import entity_namespace, extracted_namespace
from nodes.tokens import text_of

__all__ = [
    "ACKNOWLEDGEMENTS",
    "MAX_BATCH_CHARS",
    "MAX_BATCH_MESSAGES",
    "batch_text",
    "content_words",
    "has_new_content",
    "mentioning",
    "not_extracted",
]

MAX_BATCH_MESSAGES = 6
"""Human messages per extraction call; older pending ones are marked skipped (the summary keeps them)."""

MAX_BATCH_CHARS = 2000
"""Characters of user text per extraction call: the local model's context is small."""

ACKNOWLEDGEMENTS = frozenset(
    {
        *("ok", "okay", "k", "kk", "thanks", "thank", "thx", "ty", "cheers", "please", "pls"),
        *("yes", "yeah", "yep", "yup", "no", "nope", "nah", "sure", "right", "alright", "fine", "agreed"),
        *("cool", "great", "nice", "good", "perfect", "awesome", "wow", "lol", "haha", "hmm", "oh", "ah"),
        *("hi", "hello", "hey", "bye", "goodbye", "np", "got", "it", "that", "this", "so", "very", "much"),
        *("lot", "sounds", "understood", "indeed", "true", "exactly", "done", "again", "too", "also"),
    }
)
"""Words that carry nothing to remember on their own ("ok thanks", "yes, great")."""


async def not_extracted(store: BaseStore, user_id: str, messages: Sequence[AnyMessage]) -> list[HumanMessage]:
    """Human messages of the working set without an extraction marker, oldest first (one round trip)."""
    humans = [m for m in messages if isinstance(m, HumanMessage) and m.id]
    if not humans:
        return []
    namespace = extracted_namespace(user_id)
    markers = await store.abatch([GetOp(namespace, str(m.id)) for m in humans])
    return [m for m, marker in zip(humans, markers, strict=True) if marker is None]


def batch_text(batch: Sequence[HumanMessage]) -> str:
    """The user's messages, oldest first, each cut to its share of MAX_BATCH_CHARS."""
    share = MAX_BATCH_CHARS // max(len(batch), 1)
    return "\n".join(" ".join(text_of(m).split())[:share] for m in batch)


def mentioning(batch: Sequence[HumanMessage], value: str) -> str:
    """Id of the newest message that names `value` (the newest message when none does verbatim)."""
    folded = value.casefold()
    found = next((m for m in reversed(batch) if folded in text_of(m).casefold()), batch[-1])
    return str(found.id)


def content_words(text: str) -> set[str]:
    """Words that could name something new: not filler ("the", "my"), not an acknowledgement."""
    return name_words(text) - ACKNOWLEDGEMENTS


async def has_new_content(store: BaseStore, user_id: str, batch: Sequence[HumanMessage]) -> bool:
    """Whether the messages say anything not already remembered; False skips the model call.

    Nothing new means: every word is filler or an acknowledgement ("ok thanks", "yes great"), or
    every remaining word is a word of the name or alias of an entity already remembered ("Acme!",
    "ok, Ada Lovelace"). One new word ("I moved to Lisbon", "I like jazz") is new content.
    Bounded: one index read and at most 50 record reads.
    """
    words = set().union(*(content_words(text_of(m)) for m in batch))
    if not words:
        return False
    keys = await entity_keys_for(store, user_id, words, limit=50)
    namespace = entity_namespace(user_id)
    items = await store.abatch([GetOp(namespace, key) for key in keys]) if keys else []
    known: set[str] = set()
    for record in filter(None, map(read_record, items)):
        known |= name_words(" ".join([record.value, *record.aliases]))
    return bool(words - known)
