"""load_memory's PassageSearch over the transcript: the user's other conversations, ranked by full text."""

from __future__ import annotations

from typing import Any

from checkpoint.connections import Pool
from checkpoint.ids import validate_id, validate_user_id
from nodes.recall import Passage, search_words

__all__ = ["AI_WEIGHT", "RECALL_SQL", "TranscriptRecall"]

AI_WEIGHT = 0.75
"""An assistant's reply counts 3/4 of a user's statement (what the user said is what they ask back
about), so one more word matched still outranks the difference."""

RECALL_SQL = """
    WITH terms AS (
        SELECT w.word, w.ord, plainto_tsquery(%(language)s::regconfig, w.word) AS q
        FROM unnest(%(words)s::text[]) WITH ORDINALITY AS w(word, ord)
    ),
    content AS (SELECT * FROM terms WHERE numnode(q) > 0),
    query AS (SELECT string_agg('(' || q::text || ')', ' | ' ORDER BY ord)::tsquery AS q FROM content),
    hits AS (
        SELECT t.thread_id, t.message_id, t.role, t.content, t.created_at, t.position,
            array(SELECT c.word FROM content c WHERE t.tsv @@ c.q ORDER BY c.ord) AS matched,
            ts_rank_cd(t.tsv, query.q, 1) AS rank
        FROM convomem_transcript t, query
        WHERE t.user_id = %(user)s
            AND (%(exclude)s::text IS NULL OR t.thread_id <> %(exclude)s)
            AND t.role IN ('human', 'ai')
            AND t.tsv @@ query.q
    )
    SELECT thread_id, message_id, role, content, created_at, matched,
        (cardinality(matched) + rank) * CASE WHEN role = 'human' THEN 1.0 ELSE %(ai_weight)s END AS score
    FROM hits
    ORDER BY score DESC, position DESC
    LIMIT %(limit)s
"""
"""One OR query of the message's content words (each word parsed alone by the transcript's language,
so its stop words drop out and the rest are stemmed as the archive stemmed them). A passage sharing more
distinct words ranks first, then by cover density (ts_rank_cd, normalised by length), newest on ties.
Only the given user's rows are ever read."""


class TranscriptRecall:
    """nodes.recall.PassageSearch on the transcript table, in the archive's text search language."""

    def __init__(self, pool: Pool, language: str) -> None:
        self.pool = pool
        self.language = language

    async def __call__(
        self, user_id: str, exclude_thread: str | None, text: str, limit: int
    ) -> list[Passage]:
        words = search_words(text)
        if not words or limit <= 0:
            return []
        params: dict[str, Any] = {
            "language": self.language,
            "words": words,
            "user": validate_user_id(user_id),
            "exclude": None if exclude_thread is None else validate_id(exclude_thread),
            "ai_weight": AI_WEIGHT,
            "limit": limit,
        }
        async with self.pool.connection() as conn:
            rows = await (await conn.execute(RECALL_SQL, params)).fetchall()
        return [
            Passage(
                thread_id=row["thread_id"],
                message_id=row["message_id"],
                role=row["role"],
                text=row["content"],
                created_at=row["created_at"],
                score=float(row["score"]),
                matched=list(row["matched"]),
            )
            for row in rows
        ]
