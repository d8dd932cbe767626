"""Which human messages an extraction covers: not yet extracted, bounded, and worth a model call."""

from __future__ import annotations

from collections.abc import Container, Mapping, Sequence
from typing import Any

from langchain_core.messages import AnyMessage, HumanMessage

from nodes.entity_index import keys_in, name_words
from nodes.memory import record_of
from nodes.memory_batch import Address, MemoryBatch
from nodes.namespaces import entity_namespace, extracted_namespace
from nodes.tokens import text_of

__all__ = [
    "ACKNOWLEDGEMENTS",
    "MAX_BATCH_CHARS",
    "MAX_BATCH_MESSAGES",
    "batch_text",
    "content_words",
    "extracted_before",
    "has_new_content",
    "marker_address",
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


def marker_address(user_id: str, message: AnyMessage) -> Address:
    """Where the "extracted" marker of one message lives."""
    return (extracted_namespace(user_id), str(message.id))


async def not_extracted(
    batch: MemoryBatch, user_id: str, messages: Sequence[AnyMessage], *, done: Container[str] = ()
) -> list[HumanMessage]:
    """Human messages of the working set without an extraction marker, oldest first (one round trip).

    Messages in `done` (those the thread's state says were extracted) are not asked about.
    """
    humans = [m for m in messages if isinstance(m, HumanMessage) and m.id and m.id not in done]
    await batch.read(marker_address(user_id, m) for m in humans)
    return [m for m in humans if batch.value(*marker_address(user_id, m)) is None]


def extracted_before(state_extraction: Mapping[str, Any] | None, messages: Sequence[AnyMessage]) -> set[str]:
    """Ids of the human messages the thread's last extraction covered, and of those before them.

    An extraction covers every waiting message and marks it before its result enters state, so a
    message at or before the newest one it covered has its marker.
    """
    covered = (state_extraction or {}).get("message_ids") or []
    newest = covered[-1] if covered else None
    ids = [str(m.id) for m in messages if isinstance(m, HumanMessage) and m.id]
    return set(ids[: ids.index(newest) + 1]) if newest in ids else set()


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


async def has_new_content(batch: MemoryBatch, user_id: str, messages: Sequence[HumanMessage]) -> bool:
    """Whether the messages say anything not already remembered; False skips the model call.

    Nothing new means: every word is filler or an acknowledgement ("ok thanks", "yes great"), or
    every remaining word is a word of the name or alias of an entity already remembered ("Acme!",
    "ok, Ada Lovelace"). One new word ("I moved to Lisbon", "I like jazz") is new content.
    Bounded: one index read and at most 50 record reads, kept in `batch` for the extraction after.
    """
    words = set().union(*(content_words(text_of(m)) for m in messages))
    if not words:
        return False
    keys = await keys_in(batch, user_id, words, limit=50)
    namespace = entity_namespace(user_id)
    await batch.read((namespace, key) for key in keys)
    known: set[str] = set()
    for record in filter(None, (record_of(batch.value(namespace, key)) for key in keys)):
        known |= name_words(" ".join([record.value, *record.aliases]))
    return bool(words - known)
