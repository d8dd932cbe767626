"""OTLP traces from a real `convomem chat`: with OTEL_EXPORTER_OTLP_ENDPOINT set, the OpenTelemetry SDK
posts a run span and its node spans to the collector; without it, nothing is sent."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import pytest
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest

from tests.e2e.cli_support import Cli, assert_ok

pytestmark = pytest.mark.slow


class Collector(ThreadingHTTPServer):
    def __init__(self) -> None:
        super().__init__(("127.0.0.1", 0), _Handler)
        self.requests: list[ExportTraceServiceRequest] = []

    @property
    def endpoint(self) -> str:
        return f"http://127.0.0.1:{self.server_address[1]}"

    def span_names(self) -> list[tuple[str, bytes, bytes]]:
        """(name, span id, parent span id) of every span received."""
        return [
            (span.name, span.span_id, span.parent_span_id)
            for request in self.requests
            for resource in request.resource_spans
            for scope in resource.scope_spans
            for span in scope.spans
        ]


class _Handler(BaseHTTPRequestHandler):
    server: Collector

    def do_POST(self) -> None:
        body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
        if self.path == "/v1/traces":
            request = ExportTraceServiceRequest()
            request.ParseFromString(body)
            self.server.requests.append(request)
        self.send_response(200)
        self.send_header("Content-Type", "application/x-protobuf")
        self.send_header("Content-Length", "0")
        self.end_headers()

    def log_message(self, format: str, *args: Any) -> None:
        pass


@pytest.fixture
def collector() -> Iterator[Collector]:
    server = Collector()
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield server
    finally:
        server.shutdown()
        server.server_close()


def test_a_chat_exports_a_run_span_with_node_children(cli: Cli, collector: Collector) -> None:
    assert_ok(cli.run("chat", "--thread", "t", "--message", "hello", env={"OTEL_EXPORTER_OTLP_ENDPOINT": ""}))
    assert collector.requests == []

    env = {"OTEL_EXPORTER_OTLP_ENDPOINT": collector.endpoint}
    assert_ok(cli.run("chat", "--thread", "t", "--message", "I work at Acme.", env=env))

    spans = collector.span_names()
    [run] = [span for span in spans if span[0] == "convomem.run"]
    children = {name for name, _, parent in spans if parent == run[1]}
    assert {"load_memory", "respond", "extract_entities", "reduce_history"} <= children
    resource = collector.requests[0].resource_spans[0].resource
    assert any(a.key == "service.name" and a.value.string_value == "convomem" for a in resource.attributes)
