"""OpenTelemetry traces of runs: a span per run with a child span per node, exported over OTLP by the
OpenTelemetry SDK when the standard OTEL_* variables name an endpoint; otherwise nothing at all."""

from __future__ import annotations

import functools
import os
from collections.abc import Mapping
from typing import Any
from uuid import UUID

from langchain_core.callbacks import BaseCallbackHandler
from opentelemetry import trace
from opentelemetry.trace import Span, Status, StatusCode, Tracer

from checkpoint.run_records import RunRecord

__all__ = ["ENDPOINT_VARIABLES", "RunTrace", "node_of", "otlp_tracer"]

ENDPOINT_VARIABLES = ("OTEL_EXPORTER_OTLP_ENDPOINT", "OTEL_EXPORTER_OTLP_TRACES_ENDPOINT")
_STEP_TAG = "graph:step:"


def node_of(tags: list[str] | None, metadata: dict[str, Any] | None) -> tuple[str, str] | None:
    """(node, task namespace) when a chain run is a node of the top graph (LangGraph tags a node's own
    run `graph:step:<n>`); None for chains inside a node and for a subgraph's nodes."""
    node = (metadata or {}).get("langgraph_node")
    namespace = str((metadata or {}).get("langgraph_checkpoint_ns") or "")
    if node is None or "|" in namespace or not any(t.startswith(_STEP_TAG) for t in tags or ()):
        return None
    return str(node), namespace


@functools.cache
def _exporting_tracer() -> Tracer:
    from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter
    from opentelemetry.sdk.resources import Resource
    from opentelemetry.sdk.trace import TracerProvider
    from opentelemetry.sdk.trace.export import BatchSpanProcessor

    # The SDK reads the endpoint, headers and resource (OTEL_SERVICE_NAME, OTEL_RESOURCE_ATTRIBUTES) itself;
    # "convomem" only names the service when nothing else does.
    named = any(os.environ.get(name) for name in ("OTEL_SERVICE_NAME", "OTEL_RESOURCE_ATTRIBUTES"))
    provider = TracerProvider(resource=Resource.create({} if named else {"service.name": "convomem"}))
    provider.add_span_processor(BatchSpanProcessor(OTLPSpanExporter()))
    return provider.get_tracer("convomem")


def otlp_tracer(environ: Mapping[str, str] = os.environ) -> Tracer | None:
    """The process's OTLP tracer when an endpoint is configured (read at the composition root), else None."""
    if not any(environ.get(name) for name in ENDPOINT_VARIABLES):
        return None
    return _exporting_tracer()


class RunTrace(BaseCallbackHandler):
    """One run's span, and a child span per node run (a retried node gets one span per attempt)."""

    run_inline = True

    def __init__(self, tracer: Tracer, name: str = "convomem.run") -> None:
        self.tracer = tracer
        self.span = tracer.start_span(name)
        self._context = trace.set_span_in_context(self.span)
        self._nodes: dict[UUID, Span] = {}

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
        if found is not None:
            node, namespace = found
            attributes = {"langgraph.node": node, "langgraph.task": namespace}
            self._nodes[run_id] = self.tracer.start_span(node, context=self._context, attributes=attributes)

    def on_chain_end(self, outputs: Any, *, run_id: UUID, **kwargs: Any) -> None:
        if (span := self._nodes.pop(run_id, None)) is not None:
            span.end()

    def on_chain_error(self, error: BaseException, *, run_id: UUID, **kwargs: Any) -> None:
        if (span := self._nodes.pop(run_id, None)) is not None:
            span.set_status(Status(StatusCode.ERROR, type(error).__name__))
            span.end()

    def finish(self, record: RunRecord) -> None:
        """End the run's span with what its record says."""
        for span in self._nodes.values():  # nodes cut off by a cancellation
            span.end()
        self._nodes.clear()
        self.span.set_attributes(
            {
                "convomem.run_id": record.run_id,
                "convomem.thread_id": record.thread_id or "",
                "convomem.user_id": record.user_id or "",
                "convomem.status": record.status,
                "convomem.model_calls": record.model_calls,
                "convomem.input_tokens": record.input_tokens,
                "convomem.output_tokens": record.output_tokens,
                "convomem.tokens_estimated": record.tokens_estimated,
                "convomem.tool_calls": record.tool_calls,
                "convomem.retries": record.retries,
            }
        )
        if record.status == "error":
            self.span.set_status(Status(StatusCode.ERROR, record.error_class or "error"))
        self.span.end()
