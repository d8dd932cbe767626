"""load_memory's PassageSearch over the transcript: the user's other conversations, ranked by full text,
and with an embedding model, by a hybrid of full text and pgvector (reciprocal-rank fusion)."""

from __future__ import annotations

import logging
from typing import Any

from langchain_core.embeddings import Embeddings

from checkpoint.connections import Pool
from checkpoint.ids import validate_id, validate_user_id
from checkpoint.passage_vectors import EMBEDDED_CHARS, vector_literal
from nodes.recall import Passage, search_words

__all__ = ["AI_WEIGHT", "FULLTEXT_SQL", "HYBRID_SQL", "MIN_SIMILARITY", "RRF_K", "TranscriptRecall"]

_log = logging.getLogger("convomem.memory")

AI_WEIGHT = 0.75
"""An assistant's reply counts 3/4 of a user's statement (what the user said is what they ask back
about), so one more word matched still outranks the difference."""
MIN_SIMILARITY = 0.3
"""Cosine similarity below which a passage is not close in meaning: the nearest passages always exist, and
without a floor every turn would bring in some whatever was asked."""
RRF_K = 60
"""Reciprocal-rank fusion's constant (Cormack et al.): score = sum of 1 / (RRF_K + rank) over the lists."""
DEPTH = 4
"""Each ranked list keeps DEPTH times the passages asked for before fusion."""

_OWN = """t.user_id = %(user)s AND (%(exclude)s::text IS NULL OR t.thread_id <> %(exclude)s)
            AND t.role IN ('human', 'ai')"""
"""The only rows any recall query reads: the user's own messages and replies, outside the current thread."""
_WEIGHT = "CASE WHEN role = 'human' THEN 1.0 ELSE %(ai_weight)s END"
_TEXT_RANKED = f"""
    terms AS (
        SELECT w.word, w.ord, plainto_tsquery(%(language)s::regconfig, w.word) AS q
        FROM unnest(%(words)s::text[]) WITH ORDINALITY AS w(word, ord)
    ),
    content AS (SELECT * FROM terms WHERE numnode(q) > 0),
    query AS (SELECT string_agg('(' || q::text || ')', ' | ' ORDER BY ord)::tsquery AS q FROM content),
    text_hits AS (
        SELECT t.thread_id, t.message_id, t.role, t.content, t.created_at, t.position,
            array(SELECT c.word FROM content c WHERE t.tsv @@ c.q ORDER BY c.ord) AS matched,
            ts_rank_cd(t.tsv, query.q, 1) AS rank
        FROM convomem_transcript t, query
        WHERE {_OWN} AND t.tsv @@ query.q
    ),
    text_scored AS (SELECT *, (cardinality(matched) + rank) * {_WEIGHT} AS score FROM text_hits),
    text_ranked AS (
        SELECT *, row_number() OVER (ORDER BY score DESC, position DESC) AS r FROM text_scored
        ORDER BY r LIMIT %(depth)s
    )"""
"""One OR query of the message's content words (each word parsed alone by the transcript's language,
so its stop words drop out and the rest are stemmed as the archive stemmed them). A passage sharing more
distinct words ranks first, then by cover density (ts_rank_cd, normalised by length), newest on ties."""

FULLTEXT_SQL = f"""
    WITH {_TEXT_RANKED}
    SELECT thread_id, message_id, role, content, created_at, matched, NULL::float8 AS similarity, score
    FROM text_ranked ORDER BY r LIMIT %(limit)s
"""
HYBRID_SQL = f"""
    WITH {_TEXT_RANKED},
    near AS (
        SELECT t.thread_id, t.message_id, t.role, t.content, t.created_at, t.position,
            t.embedding::vector <=> %(vector)s::real[]::vector AS distance
        FROM convomem_transcript t
        WHERE {_OWN} AND t.embedding IS NOT NULL AND cardinality(t.embedding) = %(dims)s
            AND t.embedding::vector <=> %(vector)s::real[]::vector <= %(max_distance)s
        ORDER BY distance, t.position DESC LIMIT %(depth)s
    ),
    vector_ranked AS (
        SELECT *, 1 - distance AS similarity, row_number() OVER (ORDER BY distance, position DESC) AS r
        FROM near
    ),
    fused AS (
        SELECT coalesce(x.thread_id, v.thread_id) AS thread_id,
            coalesce(x.message_id, v.message_id) AS message_id, coalesce(x.role, v.role) AS role,
            coalesce(x.content, v.content) AS content, coalesce(x.created_at, v.created_at) AS created_at,
            coalesce(x.position, v.position) AS position, coalesce(x.matched, '{{}}') AS matched,
            v.similarity,
            coalesce(1.0 / (%(k)s + x.r), 0) + coalesce(1.0 / (%(k)s + v.r), 0) AS fused
        FROM text_ranked x FULL JOIN vector_ranked v
            ON x.thread_id = v.thread_id AND x.message_id = v.message_id
    )
    SELECT thread_id, message_id, role, content, created_at, matched, similarity, fused * {_WEIGHT} AS score
    FROM fused ORDER BY score DESC, position DESC LIMIT %(limit)s
"""
"""The full-text list and the nearest passages by cosine distance (only those at least MIN_SIMILARITY
close, with the query's dimension), fused by reciprocal rank. The vectors are read as real[] and cast."""


class TranscriptRecall:
    """nodes.recall.PassageSearch on the transcript table, in the archive's text search language; with
    `embeddings` (and passages embedded by checkpoint.passage_vectors.EmbeddingArchive), hybrid."""

    def __init__(
        self,
        pool: Pool,
        language: str,
        embeddings: Embeddings | None = None,
        *,
        min_similarity: float = MIN_SIMILARITY,
    ) -> None:
        self.pool = pool
        self.language = language
        self.embeddings = embeddings
        self.min_similarity = min_similarity

    async def __call__(
        self, user_id: str, exclude_thread: str | None, text: str, limit: int
    ) -> list[Passage]:
        words = search_words(text)
        vector = await self._embed(text) if self.embeddings is not None and text.strip() else None
        if (not words and vector is None) or limit <= 0:
            return []
        params: dict[str, Any] = {
            "language": self.language,
            "words": words,
            "user": validate_user_id(user_id),
            "exclude": None if exclude_thread is None else validate_id(exclude_thread),
            "ai_weight": AI_WEIGHT,
            "depth": limit * DEPTH,
            "limit": limit,
        }
        if vector is not None:
            params |= {
                "vector": vector_literal(vector),
                "dims": len(vector),
                "max_distance": 1 - self.min_similarity,
                "k": RRF_K,
            }
        async with self.pool.connection() as conn:
            sql = FULLTEXT_SQL if vector is None else HYBRID_SQL
            rows = await (await conn.execute(sql, params)).fetchall()
        return [
            Passage(
                thread_id=row["thread_id"],
                message_id=row["message_id"],
                role=row["role"],
                text=row["content"],
                created_at=row["created_at"],
                score=float(row["score"]),
                matched=list(row["matched"]),
                similarity=None if row["similarity"] is None else float(row["similarity"]),
            )
            for row in rows
        ]

    async def _embed(self, text: str) -> list[float] | None:
        """The message's embedding; None (full text alone) when the embedding model fails."""
        assert self.embeddings is not None
        try:
            return await self.embeddings.aembed_query(text[:EMBEDDED_CHARS])
        except Exception as error:
            _log.warning("recall by meaning skipped, full text only this turn: %s", error)
            return None
