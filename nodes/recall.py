"""Recall across conversations: passages of the user's other threads that bear on the newest message."""

from __future__ import annotations

import re
from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, Protocol

from nodes.profile import fit_lines, text_tokens

__all__ = [
    "PASSAGES_HEADER",
    "RECALL_SHARE",
    "SEARCH_WIDTH",
    "TRACE_CHARS",
    "Passage",
    "PassageSearch",
    "passage_trace",
    "search_words",
    "select_passages",
]

RECALL_SHARE = 3
"""Passages may take at most 1/3 of memory_tokens; the profile and entities share the rest."""
SEARCH_WIDTH = 3
"""Passages asked of the search per passage wanted: room for those dropped as duplicates."""
PASSAGES_HEADER = "From your earlier conversations with this user (their words and yours):"
MAX_QUERY_WORDS = 32
"""Words of the message the search looks for: a long paste is searched by its first ones."""
TRACE_CHARS = 200
"""Characters of a passage the trace keeps: enough to recognise it, not a second copy of a long paste."""
_WORD = re.compile(r"[^\W_]+")
_SPACE = re.compile(r"\s+")


@dataclass(frozen=True)
class Passage:
    """One archived message of another conversation, and why the search found it."""

    thread_id: str
    message_id: str
    role: str
    """"human" or "ai": who said it."""
    text: str
    created_at: datetime
    score: float
    """Higher is more relevant: distinct words matched, then full-text rank (and, hybrid, vector rank)."""
    matched: list[str] = field(default_factory=list)
    """The message's words found in the passage (as the user wrote them)."""
    similarity: float | None = None
    """Cosine similarity to the message, when an embedding model found it close in meaning."""


class PassageSearch(Protocol):
    """The user's archived messages that match `text`, best first, never from `exclude_thread` and never
    another user's (checkpoint.recall in production)."""

    async def __call__(
        self, user_id: str, exclude_thread: str | None, text: str, limit: int
    ) -> list[Passage]: ...


def search_words(text: str) -> list[str]:
    """The message's distinct words (letters and digits only, so none reads as search syntax), lowercased,
    in order; the search drops the language's stop words itself."""
    words: dict[str, None] = {}
    for word in _WORD.findall(text.lower()):
        if word != "or":  # the OR operator of websearch_to_tsquery, and a stop word anyway
            words.setdefault(word, None)
    return list(words)[:MAX_QUERY_WORDS]


def _normal(text: str) -> str:
    return _SPACE.sub(" ", text).strip().casefold()


def _clip(text: str, chars: int) -> str:
    text = _SPACE.sub(" ", text).strip()
    return text if len(text) <= chars else text[: max(chars - 1, 0)] + "…"


def _line(passage: Passage, max_tokens: int) -> str:
    who = "the user said" if passage.role == "human" else "you said"
    head = f"- ({passage.created_at:%Y-%m-%d}, {who}) "
    return head + _clip(passage.text, max(max_tokens * 4 - len(head), 0))


def select_passages(
    passages: list[Passage], *, known: Iterable[str], wanted: int, max_tokens: int
) -> tuple[str, list[Passage]]:
    """Prompt text for at most `wanted` passages within `max_tokens`, and the passages in it.

    A passage whose text is already in `known` (the working set's messages, the running summary) or in
    a passage kept before it says nothing new and is skipped; a long one is cut to its share."""
    seen = [_normal(text) for text in known if text]
    fresh: list[Passage] = []
    for passage in passages:
        text = _normal(passage.text)
        if not text or any(text in other for other in seen):
            continue
        fresh.append(passage)
        seen.append(text)
        if len(fresh) == wanted:
            break
    if not fresh or max_tokens <= 0:
        return "", []
    each = max((max_tokens - text_tokens(PASSAGES_HEADER)) // len(fresh), 1)
    lines = fit_lines(PASSAGES_HEADER, [_line(p, each) for p in fresh], max_tokens)
    kept = fresh[: max(len(lines) - 1, 0)]
    return "\n".join(lines), kept


def passage_trace(passage: Passage) -> dict[str, Any]:
    """JSON-friendly reasons for state's `memory_trace`, beside the entities' (load_memory.Candidate)."""
    why = [f"other conversation {passage.thread_id}"]
    if passage.matched:
        why.append("matched words: " + ", ".join(passage.matched))
    if passage.similarity is not None:
        why.append(f"similarity: {passage.similarity:.3f}")
    why.append(f"rank score: {passage.score:.3f}")
    return {
        "key": "passage",
        "value": _clip(passage.text, TRACE_CHARS),
        "thread": passage.thread_id,
        "message_id": passage.message_id,
        "role": passage.role,
        "at": passage.created_at.isoformat(),
        "score": round(passage.score, 4),
        "matched": list(passage.matched),
        "similarity": None if passage.similarity is None else round(passage.similarity, 4),
        "why": why,
    }
