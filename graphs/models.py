"""Which chat model a process uses: a configured OpenAI-compatible server, or the embedded local one."""

from __future__ import annotations

import atexit
from functools import cache

from langchain_openai import ChatOpenAI, OpenAIEmbeddings
from langgraph.store.postgres.base import PostgresIndexConfig
from pydantic import SecretStr

from graphs.settings import Settings
from nodes.errors import ConfigError
from nodes.extract_entities import ENTITY_INDEX_FIELDS
from nodes.models import LOCAL_MODEL_NAME, LocalModelServer, find_local_model_file, make_chat_model

__all__ = ["embedding_index", "shared_chat_model"]


@cache
def _local_server(data_dir: str) -> LocalModelServer:
    """One local model server per process, stopped at exit (and by the kernel if the process dies)."""
    from pathlib import Path

    server = LocalModelServer(find_local_model_file(), log_file=Path(data_dir) / "llama-server.log")
    server.start()
    atexit.register(server.stop)
    return server


def shared_chat_model(settings: Settings) -> ChatOpenAI:
    """The model for this process; starts the local server on first use when nothing is configured."""
    if settings.uses_local_model:
        server = _local_server(str(settings.data_dir))
        return make_chat_model(
            model=LOCAL_MODEL_NAME, base_url=server.base_url, api_key=None, timeout=settings.model_timeout
        )
    key = settings.openai_api_key.get_secret_value() if settings.openai_api_key else None
    return make_chat_model(
        model=settings.model, base_url=settings.openai_base_url, api_key=key, timeout=settings.model_timeout
    )


def embedding_index(settings: Settings) -> PostgresIndexConfig | None:
    """The store's pgvector index when CONVOMEM_EMBEDDING_MODEL is set; None keeps memory lexical."""
    if not settings.embedding_model:
        return None
    if settings.uses_local_model:
        raise ConfigError(
            "CONVOMEM_EMBEDDING_MODEL needs an OpenAI-compatible server that serves embeddings: set "
            "OPENAI_BASE_URL or OPENAI_API_KEY too (or unset CONVOMEM_EMBEDDING_MODEL)."
        )
    key = settings.openai_api_key.get_secret_value() if settings.openai_api_key else "unused"
    embeddings = OpenAIEmbeddings(
        model=settings.embedding_model,
        openai_api_base=settings.openai_base_url,
        openai_api_key=SecretStr(key),
        # True would tokenize with tiktoken, which downloads its vocabulary at run time.
        check_embedding_ctx_length=False,
        request_timeout=settings.model_timeout,
    )
    return {"dims": settings.embedding_dims, "embed": embeddings, "fields": list(ENTITY_INDEX_FIELDS)}
