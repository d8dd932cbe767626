"""What a run cost and how long its parts took, observed through LangChain callbacks (the stream the caller
reads is left exactly as it is), and the one place a finished run's record is written and counted."""

from __future__ import annotations

import logging
from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any
from uuid import UUID

from langchain_core.callbacks import BaseCallbackHandler
from langchain_core.messages import AIMessage, BaseMessage
from langchain_core.outputs import LLMResult

from checkpoint.connections import Pool
from checkpoint.metadata import RUN_ID_KEY
from checkpoint.run_records import RunRecord, write_run_record
from graphs import metrics
from graphs.tracing import node_of
from nodes.tokens import count_tokens

__all__ = ["RunObserver", "RunOutcome", "build_record", "run_id_of", "save_run_record"]

_log = logging.getLogger("convomem.runs")

_FIRST_TOKEN_NODE = "respond"


class RunObserver(BaseCallbackHandler):
    """Counts one run's node times, model calls, tokens, tool calls and retries as callbacks arrive.

    A node's own run is the one LangGraph tags `graph:step:<n>`; a node started again for the same task
    (its checkpoint namespace) is a RetryPolicy retry. Inline: called on the event loop, in order.
    """

    run_inline = True

    def __init__(self, timer: Callable[[], float]) -> None:
        self.timer = timer
        self.started = timer()
        self.node_seconds: dict[str, float] = {}
        self.first_token_seconds: float | None = None
        self.model_calls = 0
        self.input_tokens = 0
        self.output_tokens = 0
        self.tokens_estimated = False
        self.tool_calls = 0
        self._client_retries = 0
        self._attempts: Counter[str] = Counter()
        self._nodes: dict[UUID, tuple[str, float]] = {}
        self._models: dict[UUID, tuple[str | None, list[BaseMessage]]] = {}

    @property
    def retries(self) -> int:
        return sum(n - 1 for n in self._attempts.values()) + self._client_retries

    def elapsed(self) -> float:
        return max(0.0, self.timer() - self.started)

    def on_chain_start(
        self,
        serialized: dict[str, Any] | None,
        inputs: Any,
        *,
        run_id: UUID,
        tags: list[str] | None = None,
        metadata: dict[str, Any] | None = None,
        **kwargs: Any,
    ) -> None:
        found = node_of(tags, metadata)
        if found is None:
            return  # not a node of this graph (a chain inside a node, or a subgraph's node)
        node, namespace = found
        self._nodes[run_id] = (node, self.timer())
        self._attempts[namespace or str(run_id)] += 1

    def on_chain_end(self, outputs: Any, *, run_id: UUID, **kwargs: Any) -> None:
        self._node_done(run_id)

    def on_chain_error(self, error: BaseException, *, run_id: UUID, **kwargs: Any) -> None:
        self._node_done(run_id)

    def on_chat_model_start(
        self,
        serialized: dict[str, Any] | None,
        messages: list[list[BaseMessage]],
        *,
        run_id: UUID,
        metadata: dict[str, Any] | None = None,
        **kwargs: Any,
    ) -> None:
        self.model_calls += 1
        self._models[run_id] = ((metadata or {}).get("langgraph_node"), list(messages[0]) if messages else [])

    def on_llm_new_token(self, token: Any, *, run_id: UUID, **kwargs: Any) -> None:
        self._first_output(run_id)

    def on_llm_end(self, response: LLMResult, *, run_id: UUID, **kwargs: Any) -> None:
        self._first_output(run_id)
        _, prompt = self._models.pop(run_id, (None, []))
        generations = response.generations[0] if response.generations else []
        message = getattr(generations[0], "message", None) if generations else None
        usage = message.usage_metadata if isinstance(message, AIMessage) else None
        if usage:
            self.input_tokens += int(usage.get("input_tokens") or 0)
            self.output_tokens += int(usage.get("output_tokens") or 0)
            return
        self.tokens_estimated = True  # the provider said nothing: count the way the budgets do
        self.input_tokens += count_tokens(prompt)
        self.output_tokens += count_tokens([message]) if isinstance(message, BaseMessage) else 0

    def on_llm_error(self, error: BaseException, *, run_id: UUID, **kwargs: Any) -> None:
        self._models.pop(run_id, None)

    def on_tool_start(self, serialized: dict[str, Any] | None, input_str: str, **kwargs: Any) -> None:
        self.tool_calls += 1

    def on_retry(self, retry_state: Any, **kwargs: Any) -> None:
        self._client_retries += 1

    def _node_done(self, run_id: UUID) -> None:
        found = self._nodes.pop(run_id, None)
        if found is not None:
            node, started = found
            self.node_seconds[node] = self.node_seconds.get(node, 0.0) + max(0.0, self.timer() - started)

    def _first_output(self, run_id: UUID) -> None:
        model = self._models.get(run_id)
        if self.first_token_seconds is None and model is not None and model[0] == _FIRST_TOKEN_NODE:
            self.first_token_seconds = self.elapsed()


@dataclass(frozen=True)
class RunOutcome:
    """Who ran and how it ended, next to what the observer counted."""

    run_id: str
    thread_id: str | None
    user_id: str | None
    started_at: datetime
    status: str
    error: BaseException | None = None
    assistant: str | None = None


def build_record(outcome: RunOutcome, observer: RunObserver, ended_at: datetime) -> RunRecord:
    error = outcome.error
    return RunRecord(
        run_id=outcome.run_id,
        thread_id=outcome.thread_id,
        user_id=outcome.user_id,
        assistant_id=outcome.assistant,
        started_at=outcome.started_at,
        ended_at=ended_at,
        status=outcome.status,
        duration_seconds=observer.elapsed(),
        node_seconds={node: round(seconds, 6) for node, seconds in observer.node_seconds.items()},
        first_token_seconds=observer.first_token_seconds,
        model_calls=observer.model_calls,
        input_tokens=observer.input_tokens,
        output_tokens=observer.output_tokens,
        tokens_estimated=observer.tokens_estimated,
        tool_calls=observer.tool_calls,
        retries=observer.retries,
        error_class=type(error).__name__ if error is not None else None,
        error_message=str(error) if error is not None else None,
    )


async def save_run_record(
    pool: Pool | None, outcome: RunOutcome, observer: RunObserver, ended_at: datetime
) -> RunRecord:
    """Count the run in this process's metrics and write its row; a failed write is logged, never raised
    (the turn's own result stands)."""
    record = build_record(outcome, observer, ended_at)
    metrics.observe_run(record)
    if pool is not None:
        try:
            await write_run_record(pool, record)
        except Exception as error:
            _log.warning("could not write the record of run %s: %s", record.run_id, error)
    return record


def run_id_of(config: Any, fallback: Callable[[], str]) -> str:
    """The run's id: LangGraph Server's (config run_id), the API's (metadata run_id), else a new one."""
    metadata = (config or {}).get("metadata") or {}
    found: Sequence[Any] = ((config or {}).get("run_id"), metadata.get(RUN_ID_KEY))
    return next((str(value) for value in found if value), None) or fallback()
