"""Prometheus metrics of this process's runs (every path that runs the graph here counts), in
prometheus_client's default registry: LangGraph Server's own /metrics serves that registry, so the
convomem_* series appear there next to the server's; prometheus_client writes the format."""

from __future__ import annotations

from prometheus_client import REGISTRY, Counter, Histogram

from checkpoint.run_records import RunRecord

__all__ = ["REGISTRY", "observe_run"]

_SECONDS = (0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 120.0, 300.0)

TURNS = Counter(
    "convomem_turns", "Runs of the conversation graph, by how they ended.", ["status"], registry=REGISTRY
)
TURN_SECONDS = Histogram(
    "convomem_turn_seconds", "Wall time of a run.", ["status"], buckets=_SECONDS, registry=REGISTRY
)
FIRST_TOKEN_SECONDS = Histogram(
    "convomem_time_to_first_token_seconds",
    "From a run's start to the reply's first token.",
    buckets=_SECONDS,
    registry=REGISTRY,
)
TOKENS = Counter(
    "convomem_tokens",
    "Model tokens, by direction (input/output) and source (provider usage or estimated).",
    ["direction", "source"],
    registry=REGISTRY,
)
NODE_SECONDS = Histogram(
    "convomem_node_seconds",
    "Time spent in one node during a run.",
    ["node"],
    buckets=_SECONDS,
    registry=REGISTRY,
)
MODEL_CALLS = Counter("convomem_model_calls", "Chat model calls.", registry=REGISTRY)
TOOL_CALLS = Counter("convomem_tool_calls", "Tool calls.", registry=REGISTRY)
RETRIES = Counter("convomem_retries", "Node retries after transient errors.", registry=REGISTRY)


def observe_run(record: RunRecord) -> None:
    """Count one finished run."""
    TURNS.labels(record.status).inc()
    TURN_SECONDS.labels(record.status).observe(record.duration_seconds)
    if record.first_token_seconds is not None:
        FIRST_TOKEN_SECONDS.observe(record.first_token_seconds)
    source = "estimated" if record.tokens_estimated else "provider"
    TOKENS.labels("input", source).inc(record.input_tokens)
    TOKENS.labels("output", source).inc(record.output_tokens)
    for node, seconds in record.node_seconds.items():
        NODE_SECONDS.labels(node).observe(seconds)
    MODEL_CALLS.inc(record.model_calls)
    TOOL_CALLS.inc(record.tool_calls)
    RETRIES.inc(record.retries)
