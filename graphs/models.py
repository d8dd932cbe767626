"""Which chat model a process uses: a configured OpenAI-compatible server, or the embedded local one."""

from __future__ import annotations

import atexit
from functools import cache

from langchain_openai import ChatOpenAI

from graphs.settings import Settings
from nodes.models import LOCAL_MODEL_NAME, LocalModelServer, find_local_model_file, make_chat_model

__all__ = ["shared_chat_model"]


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
