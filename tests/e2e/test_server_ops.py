"""Run records and /metrics on LangGraph Server: a run through langgraph dev + langgraph-sdk writes the
same row the Python API writes, and the server's /metrics counts it."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import httpx
import psycopg
from langgraph_sdk import get_client
from psycopg.rows import dict_row

from tests.e2e.server_support import running_dev_server, server_env
from tests.fake_openai import FakeOpenAIServer

GRAPH = "convomem"


def records(url: str) -> list[dict[str, Any]]:
    with psycopg.connect(url, autocommit=True, row_factory=dict_row) as conn:
        return conn.execute("SELECT * FROM convomem_run_records ORDER BY started_at").fetchall()


def turns_counted(metrics_text: str, status: str) -> float:
    prefix = f'convomem_turns_total{{status="{status}"}} '
    found = [line.removeprefix(prefix) for line in metrics_text.splitlines() if line.startswith(prefix)]
    return float(found[0]) if found else 0.0


async def test_a_server_run_writes_its_record_and_metrics_count_it(
    database_url: str, fake_model: FakeOpenAIServer, tmp_path: Path
) -> None:
    workdir = tmp_path / "server"
    workdir.mkdir()
    env = server_env(database_url, fake_model.base_url, tmp_path / "data")
    with running_dev_server(workdir, env) as server:
        async with get_client(url=server.url, api_key=None) as client:
            thread_id = str((await client.threads.create())["thread_id"])
            run = await client.runs.create(
                thread_id,
                GRAPH,
                input={"messages": [{"role": "user", "content": "I work at Acme."}]},
                context={"user_id": "u1"},
            )
            await client.runs.join(thread_id, run["run_id"])
            paused = await client.runs.create(
                thread_id,
                GRAPH,
                input={"messages": [{"role": "user", "content": "My name is Alice."}]},
                context={"user_id": "u1", "review_memory": True},
            )
            await client.runs.join(thread_id, paused["run_id"])
        metrics = httpx.get(f"{server.url}/metrics", timeout=10)

    first, second = records(database_url)
    assert (first["run_id"], first["thread_id"], first["user_id"]) == (run["run_id"], thread_id, "u1")
    assert (first["status"], second["status"]) == ("ok", "interrupted")
    assert second["run_id"] == paused["run_id"]
    assert {"load_memory", "respond", "extract_entities"} <= set(first["node_seconds"])
    assert first["input_tokens"] > 0 and not first["tokens_estimated"]
    assert first["first_token_seconds"] is not None

    assert metrics.status_code == 200, metrics.text
    assert metrics.headers["content-type"].startswith("text/plain")
    assert turns_counted(metrics.text, "ok") == 1
    assert turns_counted(metrics.text, "interrupted") == 1
    assert "convomem_time_to_first_token_seconds_count" in metrics.text
