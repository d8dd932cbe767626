"""`langgraph dev` with ConvomemSaver: the server sees a checkpointer that implements adelete_for_runs and
acopy_thread (no degraded-mode warning), copies threads through it, and rolls a busy thread back without
leaving a checkpoint of the cancelled run.

The server is a real subprocess (tests/e2e/server_support.py) on the test's own database, the model the
in-process fake OpenAI server; everything is checked over langgraph-sdk and in the Postgres rows.
"""

from __future__ import annotations

import asyncio
import re
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from langgraph_sdk import get_client
from langgraph_sdk.client import LangGraphClient

from tests.e2e.server_support import LangGraphDevServer, running_dev_server, server_env
from tests.e2e.test_langgraph_server import (
    GRAPH,
    INTRODUCTION,
    checkpoint_ids,
    history,
    messages_of,
    new_thread,
    turn,
    user_says,
)
from tests.fake_openai import FakeOpenAIServer
from tests.integration.support import assert_linear_history, orphan_writes, rows

pytestmark = [pytest.mark.slow, pytest.mark.timeout(180)]

USER = "u1"
DEGRADED = ("missing adelete_for_runs", "missing acopy_thread")
"""What langgraph-api logs when the custom checkpointer lacks these (langgraph_api/_checkpointer)."""
CUSTOM = re.compile(r"Using custom checkpointer: ConvomemSaver")
RESPOND_HOLD_SECONDS = 3.0
WAIT = 30.0


@pytest.fixture
def server(database_url: str, fake_model: FakeOpenAIServer, tmp_path: Path) -> Iterator[LangGraphDevServer]:
    workdir = tmp_path / "server"
    workdir.mkdir()
    env = server_env(database_url, fake_model.base_url, tmp_path / "data")
    with running_dev_server(workdir, env) as dev:
        yield dev


@pytest.fixture
async def client(server: LangGraphDevServer) -> AsyncIterator[LangGraphClient]:
    async with get_client(url=server.url, api_key=None) as opened:
        yield opened


def run_checkpoints(url: str, run_id: str) -> int:
    """Checkpoints whose metadata names the run (LangGraph Server stamps its run id on each)."""
    [(count,)] = rows(url, "SELECT count(*) FROM checkpoints WHERE metadata ->> 'run_id' = %s", (run_id,))
    return int(count)


async def wait_for(condition: Callable[[], bool], what: str, timeout: float = WAIT) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout}s waiting for: {what}")
        await asyncio.sleep(0.05)


async def test_the_server_finds_delete_for_runs_and_copy_thread(
    client: LangGraphClient, server: LangGraphDevServer
) -> None:
    """The capability check runs when the server first opens the checkpointer: after a turn it has, and
    it found our saver and nothing missing."""
    await turn(client, await new_thread(client), INTRODUCTION, USER)

    log = server.log_text()
    assert CUSTOM.search(log), server.log_tail()
    for warning in DEGRADED:
        assert warning not in log, server.log_tail()


async def test_a_copied_thread_has_the_same_state_and_goes_on_alone(
    client: LangGraphClient, database_url: str, fake_model: FakeOpenAIServer
) -> None:
    source = await new_thread(client)
    await turn(client, source, INTRODUCTION, USER)
    await turn(client, source, "I work at Acme in Berlin.", USER)
    source_state = await client.threads.get_state(source)
    source_history = await history(client, source)

    copy_thread: Callable[[str], Awaitable[Any]] = client.threads.copy  # typed `-> None`, answers the copy
    copy = str((await copy_thread(source))["thread_id"])

    assert copy != source
    copy_state = await client.threads.get_state(copy)
    assert copy_state["values"] == source_state["values"]
    assert copy_state["next"] == source_state["next"] == []
    assert copy_state["checkpoint"]["checkpoint_id"] == source_state["checkpoint"]["checkpoint_id"]
    copy_history = await history(client, copy)
    assert [h["checkpoint"]["checkpoint_id"] for h in copy_history] == [
        h["checkpoint"]["checkpoint_id"] for h in source_history
    ]
    assert [h["values"] for h in copy_history] == [h["values"] for h in source_history]
    assert checkpoint_ids(database_url, copy) == checkpoint_ids(database_url, source)
    assert_linear_history(database_url, copy)

    await turn(client, copy, "Where do I live?", USER)

    assert [m["content"] for m in messages_of(await client.threads.get_state(copy))][-2:] == [
        "Where do I live?",
        "Noted: Where do I live?",
    ]
    assert (await client.threads.get_state(source))["values"] == source_state["values"], "source untouched"
    assert checkpoint_ids(database_url, source) == {h["checkpoint"]["checkpoint_id"] for h in source_history}


async def test_rollback_on_a_busy_thread_leaves_no_checkpoint_of_the_cancelled_run(
    client: LangGraphClient, database_url: str, fake_model: FakeOpenAIServer
) -> None:
    thread_id = await new_thread(client)
    await turn(client, thread_id, INTRODUCTION, USER)
    before = checkpoint_ids(database_url, thread_id)
    fake_model.set_delay("respond", RESPOND_HOLD_SECONDS)
    try:
        first = await client.runs.create(
            thread_id, GRAPH, input=user_says("first, to be rolled back"), context={"user_id": USER}
        )
        run_id = first["run_id"]
        await wait_for(
            lambda: len(fake_model.requests_of("respond")) == 2 and run_checkpoints(database_url, run_id) > 0,
            "the first run waiting inside respond, its first checkpoints saved",
        )
    finally:
        fake_model.set_delay("respond", 0)
    assert run_checkpoints(database_url, first["run_id"]) > 0

    second = await client.runs.create(
        thread_id,
        GRAPH,
        input=user_says("second, kept"),
        context={"user_id": USER},
        multitask_strategy="rollback",
    )
    await client.runs.join(thread_id, second["run_id"])

    state = await client.threads.get_state(thread_id)
    texts = [m["content"] for m in messages_of(state)]
    assert texts == [INTRODUCTION, f"Noted: {INTRODUCTION}", "second, kept", "Noted: second, kept"]
    assert state["next"] == []
    await asyncio.sleep(1.0)  # a straggling write of the cancelled run would land by now
    assert run_checkpoints(database_url, first["run_id"]) == 0
    assert run_checkpoints(database_url, second["run_id"]) > 0
    assert before < checkpoint_ids(database_url, thread_id), "the earlier turn's checkpoints stay"
    assert orphan_writes(database_url, thread_id) == 0
    assert_linear_history(database_url, thread_id)
    assert {h["checkpoint"]["checkpoint_id"] for h in await history(client, thread_id)} == checkpoint_ids(
        database_url, thread_id
    )


async def test_a_message_sent_during_memory_work_is_queued_not_refused(
    client: LangGraphClient, database_url: str, fake_model: FakeOpenAIServer
) -> None:
    """The server's default multitask strategy (none named) queues the second run behind the first's
    memory work; both turns land, in order."""
    thread_id = await new_thread(client)
    await turn(client, thread_id, INTRODUCTION, USER)
    extractions = len(fake_model.requests_of("extract"))
    fake_model.set_delay("extract", RESPOND_HOLD_SECONDS)
    try:
        first = await client.runs.create(
            thread_id, GRAPH, input=user_says("first, then memory work"), context={"user_id": USER}
        )
        await wait_for(
            lambda: len(fake_model.requests_of("extract")) > extractions,
            "the first run's reply saved, its extraction waiting in the model",
        )
        second = await client.runs.create(
            thread_id, GRAPH, input=user_says("second, queued"), context={"user_id": USER}
        )
    finally:
        fake_model.set_delay("extract", 0)
    await client.runs.join(thread_id, second["run_id"])
    assert (await client.runs.get(thread_id, first["run_id"]))["status"] == "success"
    assert (await client.runs.get(thread_id, second["run_id"]))["status"] == "success"
    texts = [m["content"] for m in messages_of(await client.threads.get_state(thread_id))]
    first_text, second_text = "first, then memory work", "second, queued"
    assert texts[-4:] == [first_text, f"Noted: {first_text}", second_text, f"Noted: {second_text}"]
    assert_linear_history(database_url, thread_id)
