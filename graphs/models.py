"""Which chat model a process uses: a configured OpenAI-compatible server, or the embedded local one."""

from __future__ import annotations

import logging
from functools import cache
from pathlib import Path

from langchain_openai import ChatOpenAI, OpenAIEmbeddings
from langgraph.store.postgres.base import PostgresIndexConfig
from pydantic import SecretStr

from graphs.settings import Settings
from nodes.errors import ConfigError
from nodes.extract_entities import ENTITY_INDEX_FIELDS
from nodes.model_server import RunningServer, ensure_server
from nodes.models import LOCAL_MODEL_NAME, LocalModelServer, find_local_model_file, make_chat_model
from nodes.recognizer import Recognizer, spacy_recognizer

__all__ = ["LOCAL_SERVER_LOG", "embedding_index", "embedding_model", "shared_chat_model", "shared_recognizer"]

_log = logging.getLogger("convomem.models")


LOCAL_SERVER_LOG = "llama-server.log"


@cache
def _local_server(data_dir: str) -> RunningServer:
    """The local model server shared by every convomem process on this data dir: started detached on
    first use, reused (health-checked) by later processes, stopped by `convomem model stop`."""
    server = LocalModelServer(find_local_model_file(), log_file=Path(data_dir) / LOCAL_SERVER_LOG)
    return ensure_server(Path(data_dir), server.command, log_file=server.log_file)


def shared_chat_model(settings: Settings) -> ChatOpenAI:
    """The model for this process; starts (or reuses) the local server when nothing is configured."""
    if settings.uses_local_model:
        server = _local_server(str(settings.data_dir))
        return make_chat_model(
            model=LOCAL_MODEL_NAME,
            base_url=server.base_url,
            api_key=None,
            timeout=settings.model_timeout,
            legacy_max_tokens=True,
        )
    key = settings.openai_api_key.get_secret_value() if settings.openai_api_key else None
    return make_chat_model(
        model=settings.model, base_url=settings.openai_base_url, api_key=key, timeout=settings.model_timeout
    )


@cache
def shared_recognizer(kind: str, *, required: bool = True) -> Recognizer | None:
    """Extraction's offline first pass (GraphConfig.entity_recognizer, resolved), loaded once per process.

    Not `required` (the embedded model's default, not the user's explicit choice): when spaCy is not
    installed, extraction goes on with the model alone and says so in the log.
    """
    if kind != "spacy":
        return None
    try:
        return spacy_recognizer()
    except ConfigError as error:
        if required:
            raise
        _log.warning("extraction runs without its offline first pass: %s", error)
        return None


def embedding_model(settings: Settings) -> OpenAIEmbeddings | None:
    """The configured embedding model (CONVOMEM_EMBEDDING_MODEL): the store's index and hybrid recall."""
    if not settings.embedding_model:
        return None
    if settings.uses_local_model:
        raise ConfigError(
            "CONVOMEM_EMBEDDING_MODEL needs an OpenAI-compatible server that serves embeddings: set "
            "OPENAI_BASE_URL or OPENAI_API_KEY too (or unset CONVOMEM_EMBEDDING_MODEL)."
        )
    key = settings.openai_api_key.get_secret_value() if settings.openai_api_key else "unused"
    return OpenAIEmbeddings(
        model=settings.embedding_model,
        openai_api_base=settings.openai_base_url,
        openai_api_key=SecretStr(key),
        # True would tokenize with tiktoken, which downloads its vocabulary at run time.
        check_embedding_ctx_length=False,
        request_timeout=settings.model_timeout,
    )


def embedding_index(settings: Settings) -> PostgresIndexConfig | None:
    """The store's pgvector index when CONVOMEM_EMBEDDING_MODEL is set; None keeps memory lexical."""
    embeddings = embedding_model(settings)
    if embeddings is None:
        return None
    return {"dims": settings.embedding_dims, "embed": embeddings, "fields": list(ENTITY_INDEX_FIELDS)}
