"""Embeddings of transcript passages for hybrid recall, written when the working set is archived."""

from __future__ import annotations

import logging
from collections.abc import Sequence

from langchain_core.embeddings import Embeddings
from langchain_core.messages import AnyMessage

from checkpoint.transcript import TranscriptArchive

__all__ = ["EMBEDDED_CHARS", "EMBEDDING_DDL", "EmbeddingArchive", "vector_literal"]

_log = logging.getLogger("convomem.transcript")

EMBEDDING_DDL = ("ALTER TABLE convomem_transcript ADD COLUMN IF NOT EXISTS embedding real[]",)
"""real[] rather than pgvector's `vector`: the column exists on every server, with or without pgvector, for
any model's dimension; recall casts it to `vector` only when an embedding model is configured, which needs
pgvector anyway (the store's index)."""
EMBEDDED_CHARS = 8000
"""Characters of a passage that are embedded: a long paste stays within an embedding model's input."""

MISSING_SQL = f"""
    SELECT message_id, left(content, {EMBEDDED_CHARS}) AS content FROM convomem_transcript
    WHERE thread_id = %(thread)s AND message_id = ANY(%(ids)s) AND embedding IS NULL
        AND role IN ('human', 'ai') AND content <> ''
    ORDER BY position
"""
FILL_SQL = """
    UPDATE convomem_transcript t SET embedding = v.embedding::real[]
    FROM unnest(%(ids)s::text[], %(vectors)s::text[]) AS v(id, embedding)
    WHERE t.thread_id = %(thread)s AND t.message_id = v.id AND t.embedding IS NULL
"""
"""Vectors travel as array literals: unnest would flatten a two-dimensional array parameter."""


def vector_literal(vector: Sequence[float]) -> str:
    """`{0.1,0.2,...}`, a real[] (and, cast, a pgvector) literal."""
    return "{" + ",".join(repr(float(value)) for value in vector) + "}"


class EmbeddingArchive:
    """reduce_history's Archive when an embedding model is configured: the transcript archive, then an
    embedding for every passage of the working set that has none yet. Checked against the table, so a
    failed embedding request is retried next turn and a re-run embeds nothing twice; a failure costs only
    the vectors (full-text recall still finds the passage), never the archive."""

    def __init__(self, archive: TranscriptArchive, embeddings: Embeddings) -> None:
        self.archive = archive
        self.embeddings = embeddings

    @property
    def language(self) -> str:
        return self.archive.language

    async def __call__(
        self, thread_id: str, user_id: str, messages: Sequence[AnyMessage], summary: str = ""
    ) -> None:
        await self.archive(thread_id, user_id, messages, summary)
        ids = [str(m.id) for m in messages if m.id]
        if not ids:
            return
        async with self.archive.pool.connection() as conn:
            rows = await (await conn.execute(MISSING_SQL, {"thread": thread_id, "ids": ids})).fetchall()
        if not rows:
            return
        try:
            vectors = await self.embeddings.aembed_documents([row["content"] for row in rows])
        except Exception as error:
            _log.warning("transcript passages left without embeddings this turn (retried next): %s", error)
            return
        params = {
            "thread": thread_id,
            "ids": [row["message_id"] for row in rows],
            "vectors": [vector_literal(vector) for vector in vectors],
        }
        async with self.archive.pool.connection() as conn:
            await conn.execute(FILL_SQL, params)
