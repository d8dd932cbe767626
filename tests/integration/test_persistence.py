"""Threads, entity memory and summaries persist in real Postgres and feed later turns' prompts."""

from __future__ import annotations

import asyncio

from checkpoint.persistence import open_persistence
from graphs.api import open_convomem
from graphs.settings import Settings
from nodes.prompts import MEMORY_HEADER, SUMMARY_HEADER
from tests.fake_openai import FakeOpenAIServer
from tests.integration.support import checkpoint_count, message_texts, rows, system_prompt

FIRST = "My name is Alice and I work at Acme."
SECOND = "Last year I moved to Lisbon with Bruno."
THIRD = "what did i tell you so far?"


async def test_thread_survives_closing_and_reopening(
    settings: Settings, fake_model: FakeOpenAIServer, database_url: str
) -> None:
    async with open_convomem(settings) as app:
        await app.send("t-reopen", FIRST)
        await app.send("t-reopen", SECOND)
        before = await app.state("t-reopen")

    async with open_convomem(settings) as app:
        state = await app.state("t-reopen")
        assert state.config == before.config
        messages = state.values["messages"]
        assert [m.type for m in messages] == ["human", "ai", "human", "ai"]
        assert message_texts(messages, "human") == [FIRST, SECOND]
        assert [m.id for m in messages] == [m.id for m in before.values["messages"]]
        assert state.next == ()

        ended = await app.send("t-reopen", THIRD)
        assert ended.next_nodes == ()
        prompt = fake_model.requests_of("respond")[-1]["messages"]
        assert message_texts(prompt, "user") == [FIRST, SECOND, THIRD]
        assert message_texts(prompt, "assistant") == [m.text for m in messages if m.type == "ai"]

        threads = {t.thread_id: t for t in await app.threads()}
        assert "t-reopen" in threads
        assert threads["t-reopen"].checkpoints == checkpoint_count(database_url, "t-reopen")
        assert threads["t-reopen"].last_checkpoint_id == ended.checkpoint_id

    for table in ("checkpoints", "checkpoint_writes", "checkpoint_blobs", "store"):
        assert rows(database_url, f"SELECT count(*) FROM {table}")[0][0] > 0, table
    assert rows(database_url, "SELECT DISTINCT thread_id FROM checkpoints") == [("t-reopen",)]


async def test_threads_lists_every_thread_most_recent_first(
    settings: Settings, fake_model: FakeOpenAIServer, database_url: str
) -> None:
    async with open_convomem(settings) as app:
        assert await app.threads() == []
        await app.send("older", "first thread")
        await app.send("newer", "second thread")
        listed = await app.threads()
        assert [t.thread_id for t in listed] == ["newer", "older"]
        assert [t.checkpoints for t in listed] == [
            checkpoint_count(database_url, "newer"),
            checkpoint_count(database_url, "older"),
        ]
        assert [t.thread_id for t in await app.threads(limit=1)] == ["newer"]
        await app.send("older", "active again")
        assert [t.thread_id for t in await app.threads()] == ["older", "newer"]


async def test_entities_reach_other_threads_of_the_same_user_only(
    settings: Settings, fake_model: FakeOpenAIServer, database_url: str
) -> None:
    async with open_convomem(settings) as app:
        await app.send("a", "These days I work at Acme with Zelda.", user_id="u1")
        records = {e.value: e for e in await app.entities("u1")}
        assert set(records) == {"Acme", "Zelda"}
        assert records["Acme"].type == "ORG"
        assert records["Acme"].threads == ["a"]
        assert records["Acme"].mentions == 1

        await app.send("b", THIRD, user_id="u1")
        u1_prompt = system_prompt(fake_model.requests_of("respond")[-1])
        assert MEMORY_HEADER in u1_prompt
        assert "Acme" in u1_prompt
        assert "Zelda" in u1_prompt
        assert set((await app.state("b")).values["memory_keys"]) == {"Acme", "Zelda"}

        await app.send("c", THIRD, user_id="u2")
        u2_prompt = system_prompt(fake_model.requests_of("respond")[-1])
        assert MEMORY_HEADER not in u2_prompt
        assert "Acme" not in u2_prompt
        assert "Zelda" not in u2_prompt
        assert (await app.state("c")).values["memory_keys"] == []
        assert await app.entities("u2") == []
        assert await app.entities() == []  # the settings' default user saw nothing either

    prefixes = dict(rows(database_url, "SELECT prefix, count(*) FROM store GROUP BY prefix"))
    assert prefixes["convomem.users.u1.entities"] == 2
    assert "convomem.users.u2.entities" not in prefixes
    assert "convomem.users.default.entities" not in prefixes
    assert prefixes["convomem.users.u2.extracted"] == 1  # u2's message was looked at, nothing kept


async def test_mentions_accumulate_on_one_record_across_threads(
    settings: Settings, fake_model: FakeOpenAIServer, database_url: str
) -> None:
    async with open_convomem(settings) as app:
        await app.send("a", "I work at Acme now.", user_id="u1")
        await app.send("b", "Still, I work at Acme these days.", user_id="u1")
        [acme] = [e for e in await app.entities("u1") if e.value == "Acme"]
        assert acme.mentions == 2
        assert acme.threads == ["a", "b"]
        human_ids = [
            m.id for t in ("a", "b") for m in (await app.state(t)).values["messages"] if m.type == "human"
        ]
        assert acme.source_message_ids == human_ids
        assert acme.first_seen <= acme.last_seen
    count = rows(database_url, "SELECT count(*) FROM store WHERE key = 'ORG:acme'")[0][0]
    assert count == 1


def _long(index: int) -> str:
    return f"Message {index} is about topic number {index}, told with enough words to use up tokens."


async def test_summary_folds_old_messages_and_reaches_the_prompt(
    settings: Settings, fake_model: FakeOpenAIServer
) -> None:
    small = settings.model_copy(update={"working_set_tokens": 120})
    sent: list[str] = []
    async with open_convomem(small) as app:
        for index in range(6):
            sent.append(_long(index))
            await app.send("t-sum", sent[-1])
            if (await app.state("t-sum")).values.get("summary"):
                break
        values = (await app.state("t-sum")).values
        assert values.get("summary"), "no summary after six turns over a 120-token working set"

    summary = values["summary"]
    messages = values["messages"]
    humans = message_texts(messages, "human")
    assert humans[-1] == sent[-1], "the newest human message must stay in the working set"
    assert sent[0] not in humans, "the oldest message should have been folded"
    assert len(messages) < 2 * len(sent)
    assert values.get("summarized_ids") == []
    assert {m.type for m in messages} == {"human", "ai"}, "the summary is never a chat message"
    assert summary not in [m.text for m in messages]
    folded_request = fake_model.requests_of("summarize")[-1]
    assert sent[0] in folded_request["messages"][-1]["content"]

    # The summary lives in the checkpoint: a new process's next turn gets it in the system prompt,
    # and the folded messages are not sent again as chat messages.
    async with open_convomem(small) as app:
        await app.send("t-sum", THIRD)
    prompt = fake_model.requests_of("respond")[-1]
    assert f"{SUMMARY_HEADER}\n{summary}" in system_prompt(prompt)
    assert sent[0] not in message_texts(prompt["messages"], "user")
    assert message_texts(prompt["messages"], "user")[-1] == THIRD


async def test_two_processes_setting_up_a_fresh_database_at_once_both_succeed(database_url: str) -> None:
    """Upstream's first migrations would collide (UniqueViolation) without the setup lock."""

    async def open_and_close() -> None:
        async with open_persistence(database_url, setup=True):
            pass

    await asyncio.gather(*(open_and_close() for _ in range(4)))
    assert rows(database_url, "SELECT count(*) FROM convomem_migrations")[0][0] >= 3
