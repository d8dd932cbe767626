"""The web console's JSON API in process (the ASGI app LangGraph Server mounts), on the test's real Postgres:
what each page reads, the edits going through the CLI's rules, ownership with tokens, cross-site refusal.
The browser tests (tests/e2e/test_console_browser.py) drive the same app under `langgraph dev`."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from typing import Any

import httpx
import pytest
from pydantic import SecretStr

from graphs.api import Convomem
from graphs.server import make_app
from graphs.settings import Settings

BASE = "http://127.0.0.1:8123"
HOSTILE = "<script>window.__pwned=1</script><img src=x onerror=alert(1)>"


async def client_for(settings: Settings) -> AsyncIterator[httpx.AsyncClient]:
    app = make_app(settings)
    transport = httpx.ASGITransport(app=app, client=("127.0.0.1", 5000))
    async with (
        app.router.lifespan_context(app),
        httpx.AsyncClient(transport=transport, base_url=BASE) as client,
    ):
        yield client


@pytest.fixture
async def console(settings: Settings) -> AsyncIterator[httpx.AsyncClient]:
    async for client in client_for(settings):
        yield client


@pytest.fixture
async def seeded(app: Convomem) -> dict[str, str]:
    """Two users' threads: u1 talks twice (once with markup), u2 once."""
    await app.send("t-one", "I work at Acme and I live in Lisbon.", user_id="u1")
    await app.send("t-one", HOSTILE, user_id="u1")
    await app.send("t-two", "My name is Bob.", user_id="u2")
    return {"u1": "t-one", "u2": "t-two"}


def post(client: httpx.AsyncClient, path: str, body: Any, **headers: str) -> Any:
    return client.post(
        path, content=json.dumps(body), headers={"Content-Type": "application/json", **headers}
    )


async def test_the_pages_and_assets_are_served_locally_with_a_strict_policy(
    console: httpx.AsyncClient,
) -> None:
    page = await console.get("/console/")
    assert page.status_code == 200
    assert "script-src 'self'" in page.headers["content-security-policy"]
    for name in ("console.js", "threads.js", "memory.js", "ops.js", "console.css", "favicon.svg"):
        response = await console.get(f"/console/static/{name}")
        assert response.status_code == 200, name
        text = response.text.replace("http://www.w3.org/2000/svg", "")  # a namespace name, never fetched
        assert "http://" not in text and "https://" not in text, f"{name} names a remote URL"
    assert (await console.get("/console/static/../server.py")).status_code == 404


async def test_threads_timeline_and_transcript_read_what_the_graph_wrote(
    console: httpx.AsyncClient, seeded: dict[str, str]
) -> None:
    me = (await console.get("/console/api/me")).json()
    assert me["confined"] is False and {"u1", "u2"} <= set(me["users"])
    listed = (await console.get("/console/api/threads", params={"user": "u1"})).json()
    assert [t["thread_id"] for t in listed] == ["t-one"]
    assert listed[0]["title"].startswith("I work at Acme")
    found = (await console.get("/console/api/threads", params={"user": "u1", "search": "acme"})).json()
    assert len(found) == 1
    assert (await console.get("/console/api/threads", params={"user": "u1", "search": "zebra"})).json() == []

    view = (await console.get("/console/api/threads/t-one")).json()
    ids = {c["checkpoint_id"] for c in view["checkpoints"]}
    assert view["head"] in ids
    assert all(c["parent_id"] in ids for c in view["checkpoints"] if c["parent_id"] in ids)
    first_input = [c for c in view["checkpoints"] if c["source"] == "input"][-1]
    at = (await console.get(f"/console/api/threads/t-one/checkpoints/{first_input['checkpoint_id']}")).json()
    assert at["messages"] == [] or at["messages"][-1]["role"] in {"human", "ai"}

    transcript = (await console.get("/console/api/threads/t-one/transcript")).json()["entries"]
    assert [e["content"] for e in transcript if e["role"] == "human"][1] == HOSTILE  # stored as typed
    hits = (await console.get("/console/api/threads/t-one/transcript", params={"q": "Lisbon"})).json()["hits"]
    assert hits and "\x02Lisbon\x03" in hits[0]["snippet"]


async def test_replay_and_fork_stream_events_and_branch_the_thread(
    console: httpx.AsyncClient, seeded: dict[str, str], app: Convomem
) -> None:
    history = await app.history("t-one")
    before = {c.checkpoint_id for c in history}
    second_turn = next(c for c in history if c.source == "input")
    forked = await post(
        console,
        "/console/api/threads/t-one/fork",
        {"checkpoint_id": second_turn.checkpoint_id, "message": "Fork: I moved to Porto."},
    )
    assert forked.status_code == 200
    events = [json.loads(line) for line in forked.text.splitlines()]
    assert events[-1]["type"] == "TurnEnded" and events[-1]["next_nodes"] == []
    assert "Noted: Fork: I moved to Porto." in "".join(e["text"] for e in events if e["type"] == "ReplyToken")
    after = await app.history("t-one", limit=200)
    assert len({c.checkpoint_id for c in after} - before) >= 3
    state = await app.state("t-one")
    assert state.values["messages"][-2].content == "Fork: I moved to Porto."

    replayed = await post(
        console, "/console/api/threads/t-one/replay", {"checkpoint_id": second_turn.checkpoint_id}
    )
    assert replayed.status_code == 200 and '"TurnEnded"' in replayed.text

    unknown = await post(console, "/console/api/threads/t-one/replay", {"checkpoint_id": "nope"})
    assert unknown.status_code == 404 and "checkpoint" in unknown.json()["detail"].lower()
    empty = await post(
        console,
        "/console/api/threads/t-one/fork",
        {"checkpoint_id": second_turn.checkpoint_id, "message": "  "},
    )
    assert empty.status_code == 422 and empty.json()["detail"]


async def test_archive_export_and_delete(
    console: httpx.AsyncClient, seeded: dict[str, str], app: Convomem
) -> None:
    archived = await post(console, "/console/api/threads/t-two/archive", {"archived": True})
    assert archived.json()["status"] == "archived"
    assert (await console.get("/console/api/threads", params={"user": "u2"})).json() == []
    exported = await console.get("/console/api/threads/t-two/export")
    assert "attachment" in exported.headers["content-disposition"]
    assert exported.json()["thread_id"] == "t-two" and exported.json()["format"] == "convomem.thread"
    undecided = await post(console, "/console/api/threads/t-two/delete", {})
    assert undecided.status_code == 422 and "transcript" in undecided.json()["detail"]
    assert await app.thread("t-two") is not None
    deleted = await post(console, "/console/api/threads/t-two/delete", {"with_transcript": True})
    assert deleted.status_code == 200
    assert await app.thread("t-two") is None
    assert (await console.get("/console/api/threads/t-two")).status_code == 404


async def test_memory_edits_go_through_the_cli_rules(
    console: httpx.AsyncClient, seeded: dict[str, str], app: Convomem
) -> None:
    added = await post(
        console,
        "/console/api/memory/entities",
        {"user": "u1", "type": "PERSON", "value": "Beatriz", "context": "the user's sister"},
    )
    assert added.status_code == 200, added.text
    assert "Beatriz" in [e.value for e in await app.entities("u1")]
    bad = await post(
        console, "/console/api/memory/entities", {"user": "u1", "type": "SPACESHIP", "value": "X"}
    )
    assert bad.status_code == 422 and bad.json()["detail"]
    edited = await post(
        console,
        "/console/api/memory/entities/edit",
        {"user": "u1", "name": "Beatriz", "contexts": ["lives in Porto"]},
    )
    assert edited.status_code == 200 and edited.json()["contexts"] == ["lives in Porto"]
    fact = await post(
        console, "/console/api/memory/facts", {"user": "u1", "attribute": "lives_in", "value": "Porto"}
    )
    assert fact.status_code == 200
    memory = (await console.get("/console/api/memory", params={"user": "u1"})).json()
    versions = memory["profile"]["facts"]["lives_in"]
    assert [v["value"] for v in versions][-1] == "Porto" and len(versions) >= 2  # Lisbon closed, Porto open
    unset = await post(console, "/console/api/memory/facts/unset", {"user": "u1", "attribute": "lives_in"})
    assert unset.status_code == 200
    gone = await post(console, "/console/api/memory/entities/delete", {"user": "u1", "name": "Beatriz"})
    assert gone.status_code == 200
    assert "Beatriz" not in [e.value for e in await app.entities("u1")]


async def test_ops_series_and_report(console: httpx.AsyncClient, seeded: dict[str, str]) -> None:
    ops = (await console.get("/console/api/ops", params={"window": "1h"})).json()
    assert ops["report"]["turns"] == 3
    assert sum(p["turns"] for p in ops["series"]["points"]) == 3
    assert all(p["turn_p50"] is not None for p in ops["series"]["points"])
    mine = (await console.get("/console/api/ops", params={"window": "1h", "user": "u2"})).json()
    assert mine["report"]["turns"] == 1
    assert (await console.get("/console/api/ops", params={"window": "0m"})).status_code == 422
    health = (await console.get("/console/api/health")).json()
    assert health["status"] == "healthy"
    assert {c["name"] for c in health["checks"]} >= {"database", "migrations", "model"}


async def test_cross_site_changes_are_refused_and_nothing_changes(
    console: httpx.AsyncClient, seeded: dict[str, str], app: Convomem
) -> None:
    for headers in (
        {"Origin": "http://evil.example"},
        {"Origin": "http://127.0.0.1:9999"},
        {"Sec-Fetch-Site": "cross-site"},
        {"Origin": "null"},
    ):
        refused = await post(console, "/console/api/threads/t-one/archive", {"archived": True}, **headers)
        assert refused.status_code == 403, headers
        assert "refused" in refused.json()["detail"]
    form = await console.post("/console/api/threads/t-one/archive", data={"archived": "true"})
    assert form.status_code == 422  # a plain form post is no JSON: refused before anything happens
    assert (await app.thread("t-one")).status == "active"  # type: ignore[union-attr]
    same_site = await post(console, "/console/api/threads/t-one/archive", {"archived": True}, Origin=BASE)
    assert same_site.status_code == 200


async def test_tokens_confine_a_user_to_their_own_data(
    settings: Settings, seeded: dict[str, str], app: Convomem
) -> None:
    confined = settings.model_copy(update={"api_tokens": SecretStr("token-one-u1:u1,token-two-u2:u2")})
    async for client in client_for(confined):
        assert (await client.get("/console/api/me")).status_code == 401
        bearer = {"Authorization": "Bearer token-one-u1"}
        me = (await client.get("/console/api/me", headers=bearer)).json()
        assert me == {**me, "user": "u1", "confined": True, "users": ["u1"]}
        listed = (await client.get("/console/api/threads", headers=bearer)).json()
        assert [t["thread_id"] for t in listed] == ["t-one"]
        assert (await client.get("/console/api/threads/t-two", headers=bearer)).status_code == 404
        assert (await client.get("/console/api/threads/t-two/export", headers=bearer)).status_code == 404
        other = await client.get("/console/api/memory", params={"user": "u2"}, headers=bearer)
        assert other.status_code == 403
        delete = await post(client, "/console/api/threads/t-two/delete", {"with_transcript": True}, **bearer)
        assert delete.status_code == 404
        theirs = await post(client, "/console/api/threads/import", {"document": {}}, **bearer)
        assert theirs.status_code == 422 and "Invalid export file" in theirs.json()["detail"]
        bob = await post(
            client,
            "/console/api/threads/import",
            {"document": await app.export_thread("t-two"), "thread_id": "t-bob-copy"},
            **bearer,
        )
        assert bob.status_code == 403 and await app.thread("t-bob-copy") is None
        ops = (await client.get("/console/api/ops", params={"window": "1h"}, headers=bearer)).json()
        assert ops["report"]["turns"] == 2
