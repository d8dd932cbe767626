"""With CONVOMEM_EMBEDDING_MODEL set, entities are embedded into the store's pgvector index (over real HTTP
to the fake server's /v1/embeddings) and load_memory also picks them by meaning."""

from __future__ import annotations

import pytest

from graphs.api import open_convomem
from graphs.settings import Settings
from nodes.errors import ConfigError
from tests.fake_openai import EMBEDDING_MODEL, FakeOpenAIServer
from tests.integration.support import rows


def semantic_settings(settings: Settings) -> Settings:
    return settings.model_copy(update={"embedding_model": EMBEDDING_MODEL, "embedding_dims": 64})


async def test_entities_are_embedded_and_recalled_by_meaning(
    settings: Settings, fake_model: FakeOpenAIServer, database_url: str
) -> None:
    async with open_convomem(semantic_settings(settings)) as cm:
        await cm.send("t1", "Yesterday I visited Kristiansand with my cousin.", user_id="ann")
        vectors = rows(
            database_url, "SELECT count(*) FROM store_vectors WHERE prefix = 'convomem.users.ann.entities'"
        )
        assert vectors[0][0] >= 1, "the entity record was not embedded"
        assert fake_model.requests_of("embed"), "no request reached the embeddings endpoint"

        # No shared word: only the embedding of the misspelt name can bring the entity back.
        await cm.send("t2", "Tell me about kristiansnad again.", user_id="ann")
        trace = (await cm.state("t2")).values["memory_trace"]
        picked = {entry["value"]: entry["why"] for entry in trace}
        assert "Kristiansand" in picked, trace
        assert any(why.startswith("semantic score") for why in picked["Kristiansand"]), trace


async def test_an_embedding_model_without_a_server_is_a_config_error(settings: Settings) -> None:
    local = settings.model_copy(
        update={"embedding_model": "text-embedding-3-small", "openai_base_url": None, "openai_api_key": None}
    )
    with pytest.raises(ConfigError, match="CONVOMEM_EMBEDDING_MODEL"):
        async with open_convomem(local):
            pass


async def test_without_an_embedding_model_nothing_is_embedded(
    settings: Settings, fake_model: FakeOpenAIServer, database_url: str
) -> None:
    async with open_convomem(settings) as cm:
        await cm.send("t1", "Yesterday I visited Kristiansand with my cousin.", user_id="ann")
    assert not fake_model.requests_of("embed")
    entity_rows = "SELECT count(*) FROM store WHERE prefix = 'convomem.users.ann.entities'"
    assert rows(database_url, entity_rows)[0][0] == 1
