"""load_memory: pick what the assistant remembers about this user for the current turn (no model call)."""

from __future__ import annotations

import re

from langgraph.runtime import Runtime

from nodes.memory import EntityRecord, entity_namespace
from nodes.prompts import MEMORY_HEADER
from nodes.state import Context, Node, State, Update, authenticated_user, newest_human
from nodes.tokens import text_of

__all__ = ["format_memory", "make_load_memory", "rank_entities"]

_WORD = re.compile(r"\w+")


_FILLER = frozenset({"the", "and", "for", "with", "inc", "corp", "ltd", "of", "a", "an", "to", "in", "on"})


def _words(text: str) -> set[str]:
    return {w.casefold() for w in _WORD.findall(text)}


def rank_entities(records: list[EntityRecord], query: str) -> list[EntityRecord]:
    """Most relevant first: name words shared with the newest message, then mentions, then recency.

    Short names count ("UK", "Go"); filler words in names ("the", "of") do not.
    """
    query_words = _words(query)

    def score(record: EntityRecord) -> tuple[int, int, str]:
        names = _words(" ".join([record.value, *record.aliases])) - _FILLER
        return (len(names & query_words), record.mentions, record.last_seen)

    return sorted(records, key=score, reverse=True)


def format_memory(records: list[EntityRecord], max_tokens: int) -> tuple[str, list[str]]:
    """Memory lines within `max_tokens` (4 characters a token), and which values made it in."""
    lines: list[str] = []
    used = len(MEMORY_HEADER) // 4
    for record in records:
        context = f" — {record.contexts[-1]}" if record.contexts else ""
        line = f"- {record.value} ({record.type.lower()}, mentioned {record.mentions}x){context}"
        cost = len(line) // 4 + 1
        if used + cost > max_tokens:
            break
        lines.append(line)
        used += cost
    if not lines:
        return "", []
    return "\n".join([MEMORY_HEADER, *lines]), [r.value for r in records[: len(lines)]]


def make_load_memory(*, candidates: int = 200) -> Node:
    async def load_memory(state: State, runtime: Runtime[Context]) -> Update:
        """Memory for respond: the user's entities ranked against the newest message, within budget."""
        user_id = authenticated_user(runtime) or runtime.context.user_id
        turn = {"user_id": user_id, "review_memory": runtime.context.review_memory}
        if runtime.store is None:
            return {**turn, "memory_context": "", "memory_keys": []}
        items = await runtime.store.asearch(entity_namespace(user_id), limit=candidates)
        records = [EntityRecord.model_validate(item.value) for item in items]
        latest = newest_human(state["messages"])
        ranked = rank_entities(records, text_of(latest) if latest else "")
        context, used = format_memory(ranked, runtime.context.memory_tokens)
        return {**turn, "memory_context": context, "memory_keys": used}

    return load_memory
