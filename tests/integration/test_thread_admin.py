"""Conversation management on real Postgres: the thread row the graph keeps, listing, archive, delete,
export and import onto another database where the conversation continues."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import psycopg
import pytest

from checkpoint.locks import LOCK_NAMESPACE, thread_lock_key
from checkpoint.migrations import MIGRATIONS, apply_migrations
from checkpoint.persistence import open_persistence
from checkpoint.transcript import TranscriptArchive
from graphs.api import InvalidInput, ThreadBusy, UnknownThread, open_convomem
from graphs.settings import Settings
from nodes.prompts import SUMMARY_HEADER
from tests.e2e.cli_support import fresh_database
from tests.fake_openai import FakeOpenAIServer
from tests.integration.support import checkpoint_count, message_texts, rows, system_prompt, transcript_rows

FIRST = "Plan a   trip\nto Lisbon in May"


@pytest.fixture
def other_database(postgres_root: tuple[Path, str]) -> Iterator[str]:
    """A second, empty database on the same server: where an exported thread is imported."""
    with fresh_database(postgres_root[1]) as url:
        yield url


def thread_row(url: str, thread_id: str) -> tuple[object, ...] | None:
    found = rows(
        url,
        "SELECT user_id, title, status, message_count, created_at, updated_at FROM convomem_threads "
        "WHERE thread_id = %s",
        (thread_id,),
    )
    return found[0] if found else None


async def test_the_graph_keeps_each_threads_row(settings: Settings, database_url: str) -> None:
    async with open_convomem(settings) as app:
        await app.send("t1", FIRST, user_id="alice")
        user, title, status, count, created, first_update = thread_row(database_url, "t1")  # type: ignore[misc]
        assert (user, title, status, count) == ("alice", "Plan a trip to Lisbon in May", "active", 2)
        await app.send("t1", "and a hotel near the river", user_id="alice")
        *_, count, created_again, updated = thread_row(database_url, "t1")  # type: ignore[misc]
        assert count == 4 == transcript_rows(database_url, "t1")
        assert created_again == created and updated > first_update  # type: ignore[operator]
        assert thread_row(database_url, "t1")[1] == "Plan a trip to Lisbon in May", "title stays"  # type: ignore[index]


async def test_the_summary_titles_the_thread_once_there_is_one(settings: Settings, database_url: str) -> None:
    small = settings.model_copy(update={"working_set_tokens": 120})
    async with open_convomem(small) as app:
        for index in range(6):
            await app.send(
                "t-sum", f"Message {index} is about topic {index}, with enough words to use tokens."
            )
            summary = (await app.state("t-sum")).values.get("summary")
            if summary:
                break
        assert summary, "no summary after six turns"
        await app.send("t-sum", "one more")
        summary = (await app.state("t-sum")).values["summary"]
        title = thread_row(database_url, "t-sum")[1]  # type: ignore[index]
    assert title and summary.startswith(title.rstrip("…")), (title, summary)


async def test_listing_filters_by_user_status_and_searches_titles_literally(settings: Settings) -> None:
    async with open_convomem(settings) as app:
        await app.send("a1", "Budget 100% for the garden_party", user_id="alice")
        await app.send("a2", "Recipes for bread", user_id="alice")
        await app.send("b1", "Garden tools", user_id="bob")
        assert [t.thread_id for t in await app.threads()] == ["b1", "a2", "a1"]
        assert [t.thread_id for t in await app.threads(user="alice")] == ["a2", "a1"]
        assert [t.thread_id for t in await app.threads(search="GARDEN")] == ["b1", "a1"]
        assert [t.thread_id for t in await app.threads(search="100%")] == ["a1"]
        assert [t.thread_id for t in await app.threads(search="n_p")] == ["a1"], "_ is no wildcard"
        assert await app.threads(search="garden%party") == [], "% is no wildcard"
        listed = (await app.threads(user="bob"))[0]
        assert (listed.user_id, listed.title, listed.messages, listed.status) == (
            "bob",
            "Garden tools",
            2,
            "active",
        )
        with pytest.raises(InvalidInput, match="status"):
            await app.threads(status="gone")


async def test_archived_threads_are_hidden_until_a_new_message(settings: Settings) -> None:
    async with open_convomem(settings) as app:
        await app.send("old", "an old conversation", user_id="alice")
        await app.send("new", "a new conversation", user_id="alice")
        await app.archive_thread("old")
        assert [t.thread_id for t in await app.threads()] == ["new"]
        assert [t.thread_id for t in await app.threads(status="archived")] == ["old"]
        assert {t.thread_id for t in await app.threads(status="all")} == {"old", "new"}
        await app.archive_thread("old", archived=False)
        assert {t.thread_id for t in await app.threads()} == {"old", "new"}
        await app.archive_thread("old")
        await app.send("old", "back again", user_id="alice")
        assert (await app.threads())[0].thread_id == "old", "a message makes it active"
        with pytest.raises(UnknownThread):
            await app.archive_thread("never-used")


async def test_delete_with_and_without_transcript(settings: Settings, database_url: str) -> None:
    async with open_convomem(settings) as app:
        await app.send("keep", "remember this talk", user_id="alice")
        await app.send("drop", "forget this talk", user_id="alice")
        kept = await app.delete_thread("keep", with_transcript=False)
        dropped = await app.delete_thread("drop", with_transcript=True)
        assert (kept.transcript_messages, dropped.transcript_messages) == (0, 2)
        for thread in ("keep", "drop"):
            assert checkpoint_count(database_url, thread) == 0
            assert thread_row(database_url, thread) is None
            assert (
                rows(database_url, "SELECT count(*) FROM checkpoint_writes WHERE thread_id = %s", (thread,))[
                    0
                ][0]
                == 0
            )
            assert (
                rows(database_url, "SELECT count(*) FROM checkpoint_blobs WHERE thread_id = %s", (thread,))[
                    0
                ][0]
                == 0
            )
        assert transcript_rows(database_url, "keep") == 2 and transcript_rows(database_url, "drop") == 0
        assert await app.threads(status="all") == []
        assert await app.entities("alice") is not None, "long-term memory is not part of a thread"
        with pytest.raises(UnknownThread):
            await app.delete_thread("drop", with_transcript=True)


async def test_delete_is_refused_while_a_run_holds_the_thread(settings: Settings, database_url: str) -> None:
    async with open_convomem(settings) as app:
        await app.send("busy", "hello", user_id="alice")
        with psycopg.connect(database_url, autocommit=True) as holder:
            holder.execute("SELECT pg_advisory_lock(%s, %s)", (LOCK_NAMESPACE, thread_lock_key("busy")))
            with pytest.raises(ThreadBusy, match="nothing was deleted"):
                await app.delete_thread("busy", with_transcript=True)
        assert checkpoint_count(database_url, "busy") > 0 and transcript_rows(database_url, "busy") == 2
        assert thread_row(database_url, "busy") is not None


async def test_export_then_import_on_another_database_and_continue(
    settings: Settings, fake_model: FakeOpenAIServer, other_database: str
) -> None:
    small = settings.model_copy(update={"working_set_tokens": 120})
    sent = [f"Message {i} about topic {i}, told with enough words to use up tokens." for i in range(6)]
    async with open_convomem(small) as app:
        for text in sent:
            await app.send("trip", text, user_id="alice")
        await app.archive_thread("trip")
        exported = await app.export_thread("trip")
        source = await app.state("trip")
    text = json.dumps(exported)
    assert exported["format"] == "convomem.thread" and exported["version"] == 1
    assert [
        e["message"]["data"]["content"] for e in exported["transcript"] if e["message"]["type"] == "human"
    ] == sent
    summary = source.values["summary"]
    assert summary and exported["state"]["summary"] == summary

    elsewhere = small.model_copy(update={"database_url": other_database})
    async with open_convomem(elsewhere) as app:
        assert await app.import_thread(text) == "trip"
        listed = (await app.threads(status="archived"))[0]
        assert (listed.thread_id, listed.user_id, listed.messages) == ("trip", "alice", len(sent) * 2)
        assert [m.id for m in (await app.state("trip")).values["messages"]] == [
            m.id for m in source.values["messages"]
        ]
        with pytest.raises(InvalidInput, match="already exists"):
            await app.import_thread(text)
        assert await app.import_thread(exported, thread_id="trip-copy") == "trip-copy"
        await app.send("trip", "what did we discuss?", user_id="alice")
        transcript = await app.transcript("trip")
    prompt = fake_model.requests_of("respond")[-1]
    assert f"{SUMMARY_HEADER}\n{summary}" in system_prompt(prompt)
    kept = message_texts(source.values["messages"], "human")
    assert message_texts(prompt["messages"], "user") == [*kept, "what did we discuss?"]
    assert len(transcript) == len(sent) * 2 + 2


async def test_bad_export_files_are_refused_naming_the_field(settings: Settings) -> None:
    async with open_convomem(settings) as app:
        await app.send("t", "hello", user_id="alice")
        good = await app.export_thread("t")
        with pytest.raises(InvalidInput, match="not JSON"):
            await app.import_thread("{nope")
        with pytest.raises(InvalidInput, match="version"):
            await app.import_thread({**good, "version": 99}, thread_id="x")
        with pytest.raises(InvalidInput, match=r"state\.messages"):
            await app.import_thread({**good, "state": {"messages": [{"type": "alien"}]}}, thread_id="x")
        with pytest.raises(InvalidInput, match="thread id"):
            await app.import_thread(good, thread_id="bad id!")
        assert [t.thread_id for t in await app.threads(status="all")] == ["t"], "nothing half-imported"


async def test_the_migration_backfills_rows_from_the_transcript(database_url: str) -> None:
    async with open_persistence(database_url) as persistence:
        archive = TranscriptArchive(persistence.pool, "english")
        from langchain_core.messages import AIMessage, HumanMessage

        await archive(
            "old", "alice", [HumanMessage("First  question\nhere", id="h"), AIMessage("hi", id="a")]
        )
        async with persistence.pool.connection() as conn:
            await conn.execute("DROP TABLE convomem_threads")
            await conn.execute("DELETE FROM convomem_migrations WHERE name = '0006_thread_info'")
        assert await apply_migrations(persistence.pool, MIGRATIONS) == ["0006_thread_info"]
    assert thread_row(database_url, "old")[:4] == ("alice", "First question here", "active", 2)  # type: ignore[index]
