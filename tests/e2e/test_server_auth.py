"""LangGraph Server auth (graphs/auth.py): two users with bearer tokens against a real `langgraph dev`.

Alice cannot read, run on, resume, replay or search Bob's threads, nor reach his memories through the
graph or the /store API; requests without a valid token are refused. The server runs on the test's
own database with the fake model, like tests/e2e/test_langgraph_server.py, with tokens configured.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Awaitable, Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from langgraph_sdk import Auth, get_client
from langgraph_sdk.client import LangGraphClient
from langgraph_sdk.errors import NotFoundError, PermissionDeniedError
from pydantic import ValidationError

from graphs.auth import identify, scoped_namespace
from graphs.settings import Settings, parse_api_tokens
from tests.e2e.server_support import LangGraphDevServer, running_dev_server, server_env
from tests.e2e.test_langgraph_server import GRAPH, INTRODUCTION, checkpoint_ids, entity_keys, rows, user_says
from tests.fake_openai import FakeOpenAIServer

ALICE_TOKEN = "alice-token-0123456789"
BOB_TOKEN = "bob-token-9876543210"
TOKENS = {ALICE_TOKEN: "alice", BOB_TOKEN: "bob"}
ALICE_MEMORY = ("convomem", "users", "alice", "entities")
REFUSED = (403, 404, 409)
"""Codes the server answers a request on someone else's thread with, depending on the route."""


# ------------------------------------------------------------------------------------------ fixtures


def no_traceback(server: LangGraphDevServer) -> None:
    """Refused requests are logged as errors here by design; only a crash is a failure."""
    assert "Traceback" not in server.log_text(), server.log_tail()


@pytest.fixture
def server(database_url: str, fake_model: FakeOpenAIServer, tmp_path: Path) -> Iterator[LangGraphDevServer]:
    """`langgraph dev` with two users' tokens, on this test's database and the fake model."""
    workdir = tmp_path / "server"
    workdir.mkdir()
    tokens = ",".join(f"{token}:{user}" for token, user in TOKENS.items())
    env = server_env(database_url, fake_model.base_url, tmp_path / "data", CONVOMEM_API_TOKENS=tokens)
    with running_dev_server(workdir, env, check=no_traceback) as running:
        yield running


@pytest.fixture
async def alice(server: LangGraphDevServer) -> AsyncIterator[LangGraphClient]:
    async with get_client(url=server.url, api_key=None, headers=bearer(ALICE_TOKEN)) as client:
        yield client


@pytest.fixture
async def bob(server: LangGraphDevServer) -> AsyncIterator[LangGraphClient]:
    async with get_client(url=server.url, api_key=None, headers=bearer(BOB_TOKEN)) as client:
        yield client


# ------------------------------------------------------------------------------------------- helpers


def bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


async def status_of(call: Awaitable[Any]) -> int:
    """The HTTP status a refused SDK call failed with (the call must fail)."""
    with pytest.raises(httpx.HTTPStatusError) as refused:  # runs.wait raises httpx's own, not the SDK's
        await call
    return refused.value.response.status_code


async def alice_thread(alice: LangGraphClient, **context: Any) -> str:
    """A thread of Alice's with one turn in it; the run claims to be Bob's, which must not matter."""
    thread_id = str((await alice.threads.create())["thread_id"])
    await alice.runs.wait(
        thread_id, GRAPH, input=user_says(INTRODUCTION), context={"user_id": "bob", **context}
    )
    return thread_id


# ------------------------------------------------------------------------------------------- threads


async def test_a_user_cannot_read_run_on_or_replay_another_users_thread(
    alice: LangGraphClient, bob: LangGraphClient, database_url: str
) -> None:
    thread_id = await alice_thread(alice)
    state = await alice.threads.get_state(thread_id)
    [fork_point] = [h for h in await alice.threads.get_history(thread_id) if h["next"] == ["respond"]]
    stored = checkpoint_ids(database_url, thread_id)

    for call in (
        bob.threads.get(thread_id),
        bob.threads.get_state(thread_id),
        bob.threads.get_state(thread_id, checkpoint_id=fork_point["checkpoint"]["checkpoint_id"]),
        bob.threads.get_history(thread_id),
        bob.runs.list(thread_id),
        bob.threads.update_state(thread_id, {"summary": "planted"}),
        bob.runs.wait(thread_id, GRAPH, input=user_says("What is my name?")),
        bob.runs.wait(thread_id, GRAPH, input=None, checkpoint_id=fork_point["checkpoint"]["checkpoint_id"]),
        bob.threads.copy(thread_id),
        bob.threads.delete(thread_id),
    ):
        assert await status_of(call) in REFUSED
    assert await bob.threads.search() == []
    assert await bob.threads.search(metadata={"owner": "alice"}) == []

    assert checkpoint_ids(database_url, thread_id) == stored  # nothing ran, nothing changed
    assert (await alice.threads.get_state(thread_id))["checkpoint"] == state["checkpoint"]
    assert [t["thread_id"] for t in await alice.threads.search()] == [thread_id]
    assert (await alice.threads.get(thread_id))["metadata"]["owner"] == "alice"


async def test_a_user_cannot_resume_another_users_memory_review(
    alice: LangGraphClient, bob: LangGraphClient, database_url: str
) -> None:
    thread_id = await alice_thread(alice, review_memory=True)
    assert (await alice.threads.get_state(thread_id))["next"] == ["extract_entities"]

    refused = bob.runs.wait(thread_id, GRAPH, command={"resume": "approve"})
    assert await status_of(refused) == 404

    assert (await alice.threads.get_state(thread_id))["next"] == ["extract_entities"]
    assert entity_keys(database_url, "alice") == []
    await alice.runs.wait(thread_id, GRAPH, command={"resume": "approve"})
    assert (await alice.threads.get_state(thread_id))["next"] == []
    assert entity_keys(database_url, "alice") == ["LOC:paris", "PERSON:alice"]


async def test_a_user_cannot_give_a_thread_away(alice: LangGraphClient, bob: LangGraphClient) -> None:
    thread_id = str((await alice.threads.create())["thread_id"])

    await alice.threads.update(thread_id, metadata={"owner": "bob", "topic": "travel"})

    assert (await alice.threads.get(thread_id))["metadata"] == {"owner": "alice", "topic": "travel"}
    assert await bob.threads.search() == []


# -------------------------------------------------------------------------------------------- memory


async def test_runs_remember_for_the_caller_whatever_user_id_they_send(
    alice: LangGraphClient, bob: LangGraphClient, database_url: str, fake_model: FakeOpenAIServer
) -> None:
    await alice_thread(alice)

    assert entity_keys(database_url, "alice") == ["LOC:paris", "PERSON:alice"]
    assert entity_keys(database_url, "bob") == []
    bobs = str((await bob.threads.create())["thread_id"])
    await bob.runs.wait(bobs, GRAPH, input=user_says("Where do I live?"), context={"user_id": "alice"})
    system = fake_model.requests_of("respond")[-1]["messages"][0]["content"]
    assert "Paris" not in system  # Bob's turn did not see Alice's memory
    assert entity_keys(database_url, "bob") == []


async def test_a_resume_cannot_redirect_memories_to_another_user(
    alice: LangGraphClient, database_url: str
) -> None:
    thread_id = await alice_thread(alice, review_memory=True)

    approve = {"resume": "approve", "update": {"user_id": "bob"}}
    assert await status_of(alice.runs.wait(thread_id, GRAPH, command=approve)) == 422  # input rules
    goto = {"goto": {"node": "extract_entities", "input": {"user_id": "bob"}}}
    assert await status_of(alice.runs.wait(thread_id, GRAPH, command=goto)) == 422
    await alice.runs.wait(thread_id, GRAPH, command={"resume": "approve"})

    assert entity_keys(database_url, "bob") == []
    assert entity_keys(database_url, "alice") == ["LOC:paris", "PERSON:alice"]


async def test_a_state_edit_cannot_redirect_memories_to_another_user(
    alice: LangGraphClient, database_url: str
) -> None:
    thread_id = await alice_thread(alice, review_memory=True)

    # The auth handler cannot see a state edit's values; the graph refuses them (the custom app's 422).
    assert await status_of(alice.threads.update_state(thread_id, {"user_id": "bob"})) == 422
    await alice.runs.wait(thread_id, GRAPH, command={"resume": "approve"})

    assert entity_keys(database_url, "bob") == []


async def test_the_store_api_is_confined_to_the_callers_namespace(
    alice: LangGraphClient, bob: LangGraphClient, database_url: str
) -> None:
    await alice_thread(alice)
    own = await alice.store.search_items(ALICE_MEMORY)
    assert sorted(item["key"] for item in own["items"]) == ["LOC:paris", "PERSON:alice"]

    for call in (
        bob.store.search_items(ALICE_MEMORY),
        bob.store.get_item(ALICE_MEMORY, "LOC:paris"),
        bob.store.put_item(ALICE_MEMORY, "LOC:paris", {"value": "planted"}),
        bob.store.delete_item(ALICE_MEMORY, "LOC:paris"),
    ):
        assert await status_of(call) == 403
    assert (await bob.store.search_items(("convomem", "users")))["items"] == []
    assert (await bob.store.search_items(()))["items"] == []
    assert (await bob.store.list_namespaces())["namespaces"] == []

    await bob.store.put_item(("notes",), "n1", {"text": "mine"})
    assert rows(database_url, "SELECT prefix FROM store WHERE key = 'n1'") == [("convomem.users.bob.notes",)]
    assert (await alice.store.search_items(ALICE_MEMORY)) == own


# ------------------------------------------------------------------------------------ authentication


async def test_requests_without_a_valid_token_are_refused(server: LangGraphDevServer) -> None:
    strangers = (
        {},
        bearer("wrong-token-000000"),
        {"Authorization": ALICE_TOKEN},  # no scheme
        {"x-auth-scheme": "langsmith"},  # Studio's bypass, closed by disable_studio_auth
    )
    for headers in strangers:
        async with get_client(url=server.url, api_key=None, headers=headers) as stranger:
            for call in (
                stranger.threads.create(),
                stranger.threads.search(),
                stranger.runs.wait(None, GRAPH, input=user_says("hi")),
                stranger.store.search_items(ALICE_MEMORY),
                stranger.assistants.search(),
            ):
                assert await status_of(call) == 401
    assert httpx.get(f"{server.url}/ok").status_code == 200  # health checks need no token


async def test_anything_not_explicitly_allowed_is_denied(alice: LangGraphClient) -> None:
    [assistant] = await alice.assistants.search(graph_id=GRAPH)  # the graph's own, shared assistant

    with pytest.raises(PermissionDeniedError):
        await alice.assistants.create(GRAPH, context={"user_id": "bob"})
    with pytest.raises(PermissionDeniedError):
        await alice.assistants.update(assistant["assistant_id"], metadata={"owner": "alice"})
    with pytest.raises(PermissionDeniedError):
        await alice.crons.create(GRAPH, schedule="* * * * *", input=user_says("hi"))
    with pytest.raises(NotFoundError):
        await alice.threads.get("00000000-0000-0000-0000-000000000000")


# ------------------------------------------------------------------------- the handler's rules alone


def test_tokens_name_identities_and_the_header_must_carry_one() -> None:
    remote = {"client": ("203.0.113.9", 5000)}
    assert identify(f"Bearer {BOB_TOKEN}", remote, TOKENS, local_user="default") == "bob"
    assert identify(f"bearer  {ALICE_TOKEN} ", remote, TOKENS, local_user="default") == "alice"
    for header in (None, "", "Bearer", f"Basic {ALICE_TOKEN}", f"Bearer {ALICE_TOKEN}x", ALICE_TOKEN):
        with pytest.raises(Auth.exceptions.HTTPException) as refused:
            identify(header, remote, TOKENS, local_user="default")
        assert refused.value.status_code == 401


def test_without_tokens_only_loopback_clients_are_served_as_the_local_user() -> None:
    for host in ("127.0.0.1", "::1"):
        assert identify(None, {"client": (host, 1)}, {}, local_user="default") == "default"
    for scope in ({"client": ("192.168.1.20", 1)}, {"client": None}, {}, {"client": ("testclient", 1)}):
        with pytest.raises(Auth.exceptions.HTTPException, match="loopback clients only"):
            identify(f"Bearer {ALICE_TOKEN}", scope, {}, local_user="default")


@pytest.mark.parametrize(
    ("requested", "scoped"),
    [
        ((), ("convomem", "users", "bob")),
        (("convomem",), ("convomem", "users", "bob")),
        (("convomem", "users"), ("convomem", "users", "bob")),
        (("convomem", "users", "bob", "entities"), ("convomem", "users", "bob", "entities")),
        (("notes", "x"), ("convomem", "users", "bob", "notes", "x")),
        (("convomem", "other"), ("convomem", "users", "bob", "convomem", "other")),
    ],
)
def test_store_namespaces_land_under_the_callers_root(
    requested: tuple[str, ...], scoped: tuple[str, ...]
) -> None:
    assert scoped_namespace(requested, "bob") == scoped


@pytest.mark.parametrize(
    "requested", [("convomem", "users", "alice"), ("convomem", "users", "alice", "entities")]
)
def test_another_users_store_namespace_is_forbidden(requested: tuple[str, ...]) -> None:
    with pytest.raises(Auth.exceptions.HTTPException) as refused:
        scoped_namespace(requested, "bob")
    assert refused.value.status_code == 403


@pytest.mark.parametrize(
    ("tokens", "complaint"),
    [
        ("alice", "is not `token:identity`"),
        ("short:alice", r"8\+ characters"),
        ("alice-token-0123:not ok", "Invalid identity"),
        ("alice-token-0123:alice,alice-token-0123:bob", "reuses a token"),
    ],
)
def test_malformed_token_settings_are_refused(tokens: str, complaint: str) -> None:
    with pytest.raises(ValueError, match=complaint):
        parse_api_tokens(tokens)
    with pytest.raises(ValidationError, match=complaint):
        Settings(api_tokens=tokens)


def test_token_settings_parse_into_a_table() -> None:
    settings = Settings(api_tokens=f" {ALICE_TOKEN}:alice , {BOB_TOKEN}:bob,other-token-1:alice")
    assert settings.api_token_table == {**TOKENS, "other-token-1": "alice"}
    assert ALICE_TOKEN not in repr(settings)
    assert Settings(api_tokens="").api_token_table == {}
