"""`langgraph dev` on our Postgres checkpointer and store, driven over HTTP by langgraph-sdk.

The server is a real subprocess started from a temporary directory (its `.langgraph_api/` lands there),
loading the repo's graph, checkpointer and store through a langgraph.json with absolute paths. The
model is the in-process fake OpenAI server; Postgres is the real embedded one, a fresh database per test.
"""

from __future__ import annotations

import signal
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import psycopg
import pytest
from langgraph_sdk import get_client
from langgraph_sdk.client import LangGraphClient

from tests.e2e.server_support import LangGraphDevServer, assert_log_clean, running_dev_server, server_env
from tests.fake_openai import FakeOpenAIServer

GRAPH = "convomem"
INTRODUCTION = "My name is Alice and I live in Paris."
U1_ENTITIES = ["LOC:paris", "PERSON:alice"]


# ------------------------------------------------------------------------------------------ fixtures


@pytest.fixture
def env(database_url: str, fake_model: FakeOpenAIServer, tmp_path: Path) -> dict[str, str]:
    return server_env(database_url, fake_model.base_url, tmp_path / "data")


@pytest.fixture
def workdir(tmp_path: Path) -> Path:
    """The server's CWD: langgraph.json and `.langgraph_api/` live here, never in the repo."""
    path = tmp_path / "server"
    path.mkdir()
    return path


@pytest.fixture
def dev_server(workdir: Path, env: dict[str, str]) -> Iterator[LangGraphDevServer]:
    with running_dev_server(workdir, env) as server:
        yield server


@pytest.fixture
async def client(dev_server: LangGraphDevServer) -> AsyncIterator[LangGraphClient]:
    async with get_client(url=dev_server.url, api_key=None) as opened:
        yield opened


# ------------------------------------------------------------------------------------------- helpers


def rows(url: str, query: str, params: tuple[Any, ...] = ()) -> list[tuple[Any, ...]]:
    with psycopg.connect(url, autocommit=True) as conn:
        return conn.execute(query, params).fetchall()


def entity_keys(url: str, user_id: str) -> list[str]:
    found = rows(
        url,
        "SELECT key FROM store WHERE prefix = %s ORDER BY key",
        (f"convomem.users.{user_id}.entities",),
    )
    return [str(row[0]) for row in found]


def extracted_marker(url: str, user_id: str, message_id: str) -> Any:
    found = rows(
        url,
        "SELECT value FROM store WHERE prefix = %s AND key = %s",
        (f"convomem.users.{user_id}.extracted", message_id),
    )
    return found[0][0] if found else None


def checkpoint_ids(url: str, thread_id: str) -> set[str]:
    found = rows(url, "SELECT checkpoint_id FROM checkpoints WHERE thread_id = %s", (thread_id,))
    return {str(row[0]) for row in found}


def system_prompt(request: dict[str, Any]) -> str:
    first = request["messages"][0]
    assert first["role"] in ("system", "developer")
    return str(first["content"])


def request_texts(request: dict[str, Any]) -> str:
    return "\n".join(str(m.get("content")) for m in request["messages"])


def messages_of(state: Any) -> list[dict[str, Any]]:
    values = state["values"]
    assert isinstance(values, dict)
    messages: list[dict[str, Any]] = values["messages"]
    return messages


def user_says(text: str) -> dict[str, Any]:
    return {"messages": [{"role": "user", "content": text}]}


async def new_thread(client: LangGraphClient) -> str:
    return str((await client.threads.create())["thread_id"])


async def turn(
    client: LangGraphClient, thread_id: str, text: str, user_id: str, **context: Any
) -> dict[str, Any]:
    result = await client.runs.wait(
        thread_id, GRAPH, input=user_says(text), context={"user_id": user_id, **context}
    )
    assert isinstance(result, dict)
    return result


async def history(client: LangGraphClient, thread_id: str) -> list[Any]:
    return list(await client.threads.get_history(thread_id, limit=1000))


# --------------------------------------------------------------------------------------------- tests


async def test_turn_runs_on_our_checkpointer_and_store(
    client: LangGraphClient, database_url: str, workdir: Path
) -> None:
    thread_id = await new_thread(client)

    await turn(client, thread_id, INTRODUCTION, "u1")

    state = await client.threads.get_state(thread_id)
    messages = messages_of(state)
    assert [m["type"] for m in messages] == ["human", "ai"]
    assert messages[0]["content"] == INTRODUCTION
    assert state["next"] == []
    assert state["interrupts"] == []
    # The server read that state from our `checkpoints` table, and the nodes wrote to our `store` table.
    stored = checkpoint_ids(database_url, thread_id)
    assert state["checkpoint"]["checkpoint_id"] in stored
    assert {h["checkpoint"]["checkpoint_id"] for h in await history(client, thread_id)} == stored
    assert entity_keys(database_url, "u1") == U1_ENTITIES
    assert (workdir / ".langgraph_api").is_dir()


async def test_memory_review_pauses_and_a_rejection_stores_nothing(
    client: LangGraphClient, database_url: str, fake_model: FakeOpenAIServer
) -> None:
    thread_id = await new_thread(client)
    await turn(client, thread_id, INTRODUCTION, "u1")
    review: dict[str, Any] = {"user_id": "u1", "review_memory": True}

    paused = await turn(client, thread_id, "I work at Acme in Berlin.", "u1", review_memory=True)

    state = await client.threads.get_state(thread_id)
    assert state["next"] == ["extract_entities"]
    assert paused["__interrupt__"]
    [pending] = state["interrupts"]
    value = pending["value"]
    assert value["type"] == "memory_review"
    assert {e["value"] for e in value["entities"]} == {"Acme", "Berlin"}
    newest_human = [m for m in messages_of(state) if m["type"] == "human"][-1]
    assert value["message_id"] == newest_human["id"]
    assert entity_keys(database_url, "u1") == U1_ENTITIES  # nothing remembered before the review
    extractions = len(fake_model.requests_of("extract"))

    await client.runs.wait(thread_id, GRAPH, command={"resume": "reject"}, context=review)

    state = await client.threads.get_state(thread_id)
    assert state["next"] == []
    assert state["interrupts"] == []
    assert [m["type"] for m in messages_of(state)] == ["human", "ai", "human", "ai"]
    assert entity_keys(database_url, "u1") == U1_ENTITIES
    assert extracted_marker(database_url, "u1", value["message_id"]) == {
        "message_id": value["message_id"],
        "stored": 0,
        "error": None,
    }
    assert len(fake_model.requests_of("extract")) == extractions  # the proposal was not asked again


async def test_replay_from_a_history_checkpoint(
    client: LangGraphClient, database_url: str, fake_model: FakeOpenAIServer
) -> None:
    thread_id = await new_thread(client)
    await turn(client, thread_id, INTRODUCTION, "u1")
    before = await history(client, thread_id)
    [fork_point] = [h for h in before if h["next"] == ["respond"]]
    [original] = fake_model.requests_of("respond")
    extractions = len(fake_model.requests_of("extract"))

    await client.runs.wait(
        thread_id,
        GRAPH,
        input=None,
        checkpoint_id=fork_point["checkpoint"]["checkpoint_id"],
        context={"user_id": "u1"},
    )

    after = await history(client, thread_id)
    assert len(after) > len(before)
    assert {h["checkpoint"]["checkpoint_id"] for h in after} == checkpoint_ids(database_url, thread_id)
    responds = fake_model.requests_of("respond")
    assert len(responds) == 2
    assert responds[1]["messages"] == original["messages"]  # the same prompt, re-run from the checkpoint
    state = await client.threads.get_state(thread_id)
    assert state["next"] == []
    assert state["checkpoint"]["checkpoint_id"] not in {h["checkpoint"]["checkpoint_id"] for h in before}
    assert [m["type"] for m in messages_of(state)] == ["human", "ai"]
    assert messages_of(state)[0]["id"] == messages_of(fork_point)[0]["id"]
    # The replayed turn's message was already extracted: nothing asked, nothing stored twice.
    assert len(fake_model.requests_of("extract")) == extractions
    assert entity_keys(database_url, "u1") == U1_ENTITIES


async def test_threads_survive_a_server_restart(
    workdir: Path, env: dict[str, str], database_url: str, fake_model: FakeOpenAIServer
) -> None:
    server = LangGraphDevServer(workdir, env)
    try:
        server.start()
        async with get_client(url=server.url, api_key=None) as client:
            thread_id = await new_thread(client)
            await turn(client, thread_id, INTRODUCTION, "u1")
            state_before = await client.threads.get_state(thread_id)
            history_before = await history(client, thread_id)

        code = server.stop()
        assert code != -signal.SIGKILL, server.log_tail()  # stopped by SIGTERM, gracefully
        assert (workdir / ".langgraph_api" / ".langgraph_ops.pckl").is_file()
        server.start()

        async with get_client(url=server.url, api_key=None) as client:
            state_after = await client.threads.get_state(thread_id)
            assert state_after["checkpoint"] == state_before["checkpoint"]
            assert messages_of(state_after) == messages_of(state_before)
            history_after = await history(client, thread_id)
            assert [h["checkpoint"] for h in history_after] == [h["checkpoint"] for h in history_before]

            await turn(client, thread_id, "Where do I live?", "u1")

            state = await client.threads.get_state(thread_id)
            assert state["next"] == []
            assert [m["content"] for m in messages_of(state)][:2] == [
                m["content"] for m in messages_of(state_before)
            ]
            assert len(messages_of(state)) == 4
    finally:
        server.stop()
    assert_log_clean(server)
    latest = fake_model.requests_of("respond")[-1]
    assert "Alice" in request_texts(latest)  # the earlier conversation reached the model
    assert INTRODUCTION in [m["content"] for m in latest["messages"] if m["role"] == "user"]
    assert "Paris" in system_prompt(latest)  # and so did u1's memory


async def test_user_id_arrives_as_run_context(
    client: LangGraphClient, database_url: str, fake_model: FakeOpenAIServer
) -> None:
    await turn(client, await new_thread(client), INTRODUCTION, "u1")

    await turn(client, await new_thread(client), "Where do I live?", "u2")
    stranger = system_prompt(fake_model.requests_of("respond")[-1])
    await turn(client, await new_thread(client), "Where do I live?", "u1")
    owner = system_prompt(fake_model.requests_of("respond")[-1])

    assert "Paris" not in stranger
    assert "Alice" not in stranger
    assert "Paris" in owner
    assert "Alice" in owner
    assert entity_keys(database_url, "u1") == U1_ENTITIES
    assert entity_keys(database_url, "u2") == []


# ------------------------------------------------------------------------------ known bugs, pinned


async def test_resume_without_context_acts_for_the_paused_turns_user(
    client: LangGraphClient, database_url: str
) -> None:
    thread_id = await new_thread(client)
    await turn(client, thread_id, INTRODUCTION, "u1", review_memory=True)
    assert (await client.threads.get_state(thread_id))["next"] == ["extract_entities"]

    await client.runs.wait(thread_id, GRAPH, command={"resume": "reject"})

    assert entity_keys(database_url, "u1") == []
    assert entity_keys(database_url, "default") == []  # today: ["LOC:paris", "PERSON:alice"]


async def test_replay_without_context_acts_for_the_threads_user(
    client: LangGraphClient, database_url: str, fake_model: FakeOpenAIServer
) -> None:
    thread_id = await new_thread(client)
    await turn(client, thread_id, INTRODUCTION, "u1")
    [fork_point] = [h for h in await history(client, thread_id) if h["next"] == ["respond"]]

    await client.runs.wait(
        thread_id, GRAPH, input=None, checkpoint_id=fork_point["checkpoint"]["checkpoint_id"]
    )

    assert entity_keys(database_url, "default") == []  # today: u1's Alice and Paris
    assert len(fake_model.requests_of("extract")) == 1  # today: extracted again, for user 'default'
