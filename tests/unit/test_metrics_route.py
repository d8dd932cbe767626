"""/metrics on the server's custom app: Prometheus text, behind the same rule as the API (loopback
without tokens; a valid bearer token when CONVOMEM_API_TOKENS is set)."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest
from starlette.testclient import TestClient

from checkpoint.run_records import RunRecord
from graphs.metrics import observe_run
from graphs.server import app

LOOPBACK = ("127.0.0.1", 50000)
REMOTE = ("203.0.113.9", 50000)


def client(address: tuple[str, int]) -> TestClient:
    return TestClient(app, client=address)


def test_loopback_reads_the_metrics_without_tokens(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("CONVOMEM_API_TOKENS", raising=False)
    now = datetime.now(UTC)
    observe_run(RunRecord("r", "t", "u", now, now, "error", 0.5, {"respond": 0.4}, None, 1, 10, 2))

    response = client(LOOPBACK).get("/metrics")

    assert response.status_code == 200
    assert 'convomem_turns_total{status="error"}' in response.text
    assert 'convomem_node_seconds_count{node="respond"}' in response.text
    assert 'convomem_tokens_total{direction="input",source="provider"}' in response.text


def test_without_tokens_other_hosts_are_refused(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("CONVOMEM_API_TOKENS", raising=False)
    assert client(REMOTE).get("/metrics").status_code == 401


def test_with_tokens_a_valid_bearer_token_is_needed(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("CONVOMEM_API_TOKENS", "secret-token-1:alice")
    assert client(LOOPBACK).get("/metrics").status_code == 401
    wrong = client(REMOTE).get("/metrics", headers={"Authorization": "Bearer nope"})
    assert wrong.status_code == 401
    right = client(REMOTE).get("/metrics", headers={"Authorization": "Bearer secret-token-1"})
    assert right.status_code == 200 and "convomem_turns_total" in right.text
