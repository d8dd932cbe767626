"""Hybrid recall on real Postgres + pgvector: passages embedded when archived (once, retried after a
failure), found by meaning when no word is shared, fused with full text, and still only the user's own."""

from __future__ import annotations

import pytest
from langchain_core.embeddings import Embeddings

from checkpoint.passage_vectors import EmbeddingArchive
from checkpoint.persistence import Persistence
from checkpoint.recall import TranscriptRecall
from checkpoint.transcript import TranscriptArchive
from graphs.api import open_convomem
from graphs.settings import Settings
from tests.fake_openai import EMBEDDING_MODEL, FakeOpenAIServer
from tests.integration.support import rows, system_prompt
from tests.integration.test_recall import PLANTED, said

TOPICS = (
    {"flight", "plane", "flights", "departure", "airport"},
    {"tea", "beverage", "coffee", "drink"},
    {"weather", "rain", "sunny"},
)
TEA = "I like green tea in the morning"


class TopicEmbeddings(Embeddings):
    """One axis per topic, a small constant for everything else: closeness is the topics shared."""

    def __init__(self) -> None:
        self.calls: list[list[str]] = []
        self.fail = False

    def _vector(self, text: str) -> list[float]:
        words = set(text.lower().replace("?", " ").split())
        vector = [float(len(words & topic)) for topic in TOPICS] + [0.1]
        norm = sum(v * v for v in vector) ** 0.5
        return [v / norm for v in vector]

    def embed_documents(self, texts: list[str]) -> list[list[float]]:
        self.calls.append(list(texts))
        if self.fail:
            raise ConnectionError("embedding server down")
        return [self._vector(text) for text in texts]

    def embed_query(self, text: str) -> list[float]:
        return self.embed_documents([text])[0]


@pytest.fixture
async def embedded(persistence: Persistence) -> tuple[EmbeddingArchive, TopicEmbeddings]:
    async with persistence.pool.connection() as conn:
        await conn.execute("CREATE EXTENSION IF NOT EXISTS vector")
    embeddings = TopicEmbeddings()
    return EmbeddingArchive(TranscriptArchive(persistence.pool, "english"), embeddings), embeddings


def embedded_count(url: str) -> int:
    return int(rows(url, "SELECT count(*) FROM convomem_transcript WHERE embedding IS NOT NULL")[0][0])


async def test_passages_are_embedded_once_and_retried_after_a_failure(
    embedded: tuple[EmbeddingArchive, TopicEmbeddings], database_url: str
) -> None:
    archive, embeddings = embedded
    embeddings.fail = True
    await archive("a", "u1", said("a", PLANTED, TEA))
    assert embedded_count(database_url) == 0
    assert rows(database_url, "SELECT count(*) FROM convomem_transcript")[0][0] == 2, "archived anyway"
    embeddings.fail = False
    await archive("a", "u1", said("a", PLANTED, TEA))
    assert embedded_count(database_url) == 2
    embeddings.calls.clear()
    await archive("a", "u1", said("a", PLANTED, TEA))
    assert embeddings.calls == [], "nothing is embedded twice"
    (dims,) = rows(database_url, "SELECT DISTINCT cardinality(embedding) FROM convomem_transcript")
    assert dims == (4,)


async def test_meaning_finds_what_no_word_shares_and_fuses_with_full_text(
    embedded: tuple[EmbeddingArchive, TopicEmbeddings], persistence: Persistence
) -> None:
    archive, embeddings = embedded
    await archive("a", "u1", said("a", PLANTED, TEA, "rain again today"))
    await archive("x", "u2", said("x", "which beverage: tea or coffee", "my plane departure, airport"))
    recall = TranscriptRecall(persistence.pool, "english", embeddings)

    (best, *_) = await recall("u1", "b", "which beverage do I prefer?", 3)
    assert (best.text, best.matched) == (TEA, [])  # no word in common: found by meaning alone
    assert best.similarity is not None and best.similarity > 0.9

    both = await recall("u1", "b", "is my flight at the airport on time?", 3)
    assert both[0].text == PLANTED and both[0].matched == ["flight"] and both[0].similarity is not None

    far = await recall("u1", "b", "how many legs does a spider have?", 3)
    assert far == [], "nothing is close enough: the nearest passages are not brought in regardless"

    for question in ("which beverage do I prefer?", "plane departure airport", "tea or coffee"):
        assert {p.thread_id for p in await recall("u1", None, question, 10)} <= {"a"}
        assert {p.thread_id for p in await recall("u2", None, question, 10)} <= {"x"}
    assert await recall("u1", "a", "which beverage do I prefer?", 10) == []


async def test_vectors_of_another_dimension_are_skipped_and_a_failing_model_falls_back_to_words(
    embedded: tuple[EmbeddingArchive, TopicEmbeddings], persistence: Persistence, database_url: str
) -> None:
    archive, embeddings = embedded
    await archive("a", "u1", said("a", PLANTED, TEA))
    rows(
        database_url,
        "UPDATE convomem_transcript SET embedding = '{1,0}' WHERE content = %s RETURNING 1",
        (TEA,),
    )
    recall = TranscriptRecall(persistence.pool, "english", embeddings)
    assert await recall("u1", "b", "which beverage do I prefer?", 3) == []
    embeddings.fail = True
    assert [p.text for p in await recall("u1", "b", "flight?", 3)] == [PLANTED]


async def test_through_the_api_with_an_embedding_model_a_misspelt_question_recalls_by_meaning(
    settings: Settings, fake_model: FakeOpenAIServer
) -> None:
    hybrid = settings.model_copy(update={"embedding_model": EMBEDDING_MODEL, "embedding_dims": 64})
    async with open_convomem(hybrid) as cm:
        await cm.send("thread-a", PLANTED, user_id="u1")
        fake_model.clear_requests()
        await cm.send("thread-b", "tusday fligt departure", user_id="u1")  # no word the archive knows
        trace = (await cm.state("thread-b")).values["memory_trace"]
        await cm.send("thread-c", "tusday fligt departure", user_id="u2")
        other = (await cm.state("thread-c")).values["memory_trace"]
    prompt = system_prompt(fake_model.requests_of("respond")[0])
    assert PLANTED in prompt, prompt
    (passage,) = [e for e in trace if e["key"] == "passage" and e["value"] == PLANTED]
    assert passage["matched"] == [] and passage["similarity"] >= 0.3
    assert not [e for e in other if e["key"] == "passage"]
