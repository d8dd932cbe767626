"""OpenTelemetry spans of a run (the SDK with an in-memory exporter): one span per run, a child per node,
and nothing at all without an OTLP endpoint."""

from __future__ import annotations

from dataclasses import replace

from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

from graphs.tracing import otlp_tracer
from graphs.turn_graph import TurnGraph
from tests.support.fakes import ScriptedModel
from tests.support.graphs import CONFIG, unit_graph

GOOD = {"messages": [{"role": "user", "content": "I work at Acme Corp."}]}


def traced_graph() -> tuple[TurnGraph, InMemorySpanExporter]:
    exporter = InMemorySpanExporter()
    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    graph, _ = unit_graph(ScriptedModel(), rules=True)
    assert graph.rules is not None
    graph.rules = replace(graph.rules, tracer=provider.get_tracer("test"))
    return graph, exporter


async def test_a_run_is_one_span_with_a_child_per_node() -> None:
    graph, exporter = traced_graph()

    await graph.ainvoke(GOOD, CONFIG, context={"user_id": "u1"})

    spans = exporter.get_finished_spans()
    [run] = [span for span in spans if span.name == "convomem.run"]
    nodes = [span for span in spans if span is not run]
    assert {"load_memory", "respond", "extract_entities", "reduce_history"} <= {span.name for span in nodes}
    assert all(span.parent is not None and span.parent.span_id == run.context.span_id for span in nodes)
    assert all(span.context.trace_id == run.context.trace_id for span in nodes)
    assert run.attributes is not None
    assert run.attributes["convomem.status"] == "ok"
    assert run.attributes["convomem.user_id"] == "u1"
    assert run.attributes["convomem.tokens_estimated"] is True, "the fake model reports no usage"
    assert int(str(run.attributes["convomem.input_tokens"])) > 0


def test_no_endpoint_means_no_tracer() -> None:
    assert otlp_tracer({}) is None
    assert otlp_tracer({"OTEL_EXPORTER_OTLP_ENDPOINT": ""}) is None
