"""Every run through the Python API leaves exactly one run record, whichever way it ends."""

from __future__ import annotations

import asyncio
from typing import Any

import psycopg
import pytest
from psycopg.rows import dict_row

from graphs.api import Convomem, ModelUnavailable, ReplyToken
from tests.fake_openai import FakeOpenAIServer
from tests.integration.support import finish


def run_records(url: str, thread_id: str) -> list[dict[str, Any]]:
    with psycopg.connect(url, autocommit=True, row_factory=dict_row) as conn:
        return conn.execute(
            "SELECT * FROM convomem_run_records WHERE thread_id = %s ORDER BY started_at", (thread_id,)
        ).fetchall()


async def test_a_finished_turn_records_its_times_and_the_providers_tokens(
    app: Convomem, database_url: str
) -> None:
    await app.send("t", "I work at Acme.")

    [record] = run_records(database_url, "t")
    assert record["status"] == "ok"
    assert record["user_id"] == "default"
    assert record["assistant_id"] is None, "no assistant named: the process's settings"
    await app.send("t2", "Plan a weekend in Porto.", assistant="travel-planner")
    assert [r["assistant_id"] for r in run_records(database_url, "t2")] == ["travel-planner"]
    assert {"load_memory", "respond", "extract_entities", "reduce_history"} <= set(record["node_seconds"])
    assert record["ended_at"] >= record["started_at"]
    assert record["first_token_seconds"] is not None
    assert 0 <= record["first_token_seconds"] <= record["duration_seconds"]
    assert record["model_calls"] >= 2  # respond and extraction
    assert record["tokens_estimated"] is False, "the fake server reports usage"
    assert record["input_tokens"] > 0 and record["output_tokens"] > 0
    assert record["retries"] == 0 and record["error_class"] is None


async def test_a_transient_failure_counts_a_retry(
    app: Convomem, fake_model: FakeOpenAIServer, database_url: str
) -> None:
    fake_model.fail_next("respond", 1)
    await app.send("t", "I work at Acme.")

    [record] = run_records(database_url, "t")
    assert record["status"] == "ok"
    assert record["retries"] == 1


async def test_a_failed_turn_records_the_error_users_see(
    app: Convomem, fake_model: FakeOpenAIServer, database_url: str
) -> None:
    fake_model.fail_next("respond", 1, status=400)
    with pytest.raises(ModelUnavailable) as raised:
        await app.send("t", "this message never gets an answer")

    [record] = run_records(database_url, "t")
    assert record["status"] == "error"
    assert record["error_class"] == "ModelUnavailable"
    assert record["error_message"] == str(raised.value)
    assert "respond" in record["node_seconds"]


async def test_an_interrupted_turn_and_its_resume_are_two_records(app: Convomem, database_url: str) -> None:
    ended = await app.send("t", "My name is Alice and I work at Acme.", review_memory=True)
    assert ended.interrupts

    [record] = run_records(database_url, "t")
    assert record["status"] == "interrupted"
    assert "respond" in record["node_seconds"]

    await finish(app.resume("t", "approve"))
    first, second = run_records(database_url, "t")
    assert (first["status"], second["status"]) == ("interrupted", "ok")
    assert first["run_id"] != second["run_id"]


async def test_a_cancelled_turn_is_recorded_as_cancelled(
    app: Convomem, fake_model: FakeOpenAIServer, database_url: str
) -> None:
    fake_model.set_delay("extract", 30)  # the turn is still running when it is cancelled
    first_token = asyncio.Event()

    async def chat() -> None:
        async for event in app.chat("t", "I work at Acme."):
            if isinstance(event, ReplyToken):
                first_token.set()

    task = asyncio.create_task(chat())
    await first_token.wait()
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task

    [record] = run_records(database_url, "t")
    assert record["status"] == "cancelled"
    assert "respond" in record["node_seconds"]
