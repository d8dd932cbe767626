"""The transcript on real Postgres: every message kept however often history folds or is pruned, archived
once however often reduce_history runs; full-text search with filters and hostile queries; stats; forget."""

from __future__ import annotations

from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from langchain_core.messages import AIMessage, AnyMessage, HumanMessage, ToolMessage

from checkpoint.locks import hold_thread
from checkpoint.retention import Strategy, prune_threads
from checkpoint.transcript import HIGHLIGHT_END, HIGHLIGHT_START, TranscriptArchive
from graphs.api import Convomem, open_convomem
from graphs.settings import Settings
from nodes.errors import ConfigError, InvalidInput, ThreadBusy
from nodes.namespaces import entity_namespace
from nodes.tokens import count_tokens
from tests.integration.support import checkpoint_count, finish, rows, transcript_rows

TURNS = 12
SMALL_WORKING_SET = 64  # tokens: a turn or two, so summarize folds again and again


@pytest.fixture
async def folding(settings: Settings) -> AsyncIterator[Convomem]:
    """The API with a working set so small that almost every turn folds history into the summary."""
    async with open_convomem(settings.model_copy(update={"working_set_tokens": SMALL_WORKING_SET})) as opened:
        yield opened


async def converse(app: Convomem, thread: str, user: str, turns: int) -> list[tuple[str, str]]:
    """Send `turns` messages; (message id, text) of everything the thread ever held, in order of arrival,
    read from the working set after every turn (before the next turn can fold it away)."""
    seen: dict[str, str] = {}
    for turn in range(turns):
        ended = await app.send(
            thread, f"Turn {turn}: my cat Whiskers likes tuna number {turn}.", user_id=user
        )
        assert ended.next_nodes == ()
        for message in (await app.state(thread)).values["messages"]:
            seen.setdefault(message.id, message.text)
    return list(seen.items())


def sample(thread: str, *texts: str) -> list[AnyMessage]:
    """Alternating human / ai messages with ids derived from the thread, for archiving directly."""
    return [
        (HumanMessage if index % 2 == 0 else AIMessage)(content=text, id=f"{thread}-{index}")
        for index, text in enumerate(texts)
    ]


# ----------------------------------------------------------------------------------- completeness


async def test_transcript_keeps_every_message_while_history_folds(
    folding: Convomem, database_url: str
) -> None:
    sent = await converse(folding, "t", "u", TURNS)

    transcript = await folding.transcript("t")

    assert [(e.message_id, e.content) for e in transcript] == sent
    assert [e.role for e in transcript] == ["human", "ai"] * TURNS
    assert [e.content for e in transcript if e.role == "human"] == [
        f"Turn {turn}: my cat Whiskers likes tuna number {turn}." for turn in range(TURNS)
    ]
    assert all(e.user_id == "u" and e.thread_id == "t" for e in transcript)
    assert [e.position for e in transcript] == sorted(e.position for e in transcript)
    assert all(e.tokens == count_tokens([e.message]) > 0 for e in transcript)
    assert [e.message.id for e in transcript] == [e.message_id for e in transcript], "messages rebuild"
    state = (await folding.state("t")).values
    assert state.get("summary"), "history was folded into a summary"
    assert len(state["messages"]) <= 4 < len(transcript), "the working set stays small, the transcript not"
    assert transcript_rows(database_url, "t") == len(sent), "one row per message"


@pytest.mark.parametrize("strategy", ["keep_latest", "delete"])
async def test_pruning_checkpoints_keeps_the_transcript(
    folding: Convomem, database_url: str, strategy: Strategy
) -> None:
    await converse(folding, "t", "u", 4)
    before = await folding.transcript("t")
    checkpoints = checkpoint_count(database_url, "t")

    report = await prune_threads(
        folding.persistence.pool,
        folding.persistence.checkpointer,
        older_than=timedelta(minutes=1),
        strategy=strategy,
        dry_run=False,
        now=datetime.now(UTC) + timedelta(hours=1),
    )

    assert [pruned.thread_id for pruned in report.pruned] == ["t"]
    assert checkpoint_count(database_url, "t") < checkpoints
    assert await folding.transcript("t") == before


async def test_a_turn_paused_before_reduce_history_is_archived_when_it_ends(app: Convomem) -> None:
    await app.send("t", "First message about otters.", user_id="u")
    paused = await app.send(
        "t", "Second message about beavers.", user_id="u", interrupt_before=["reduce_history"]
    )
    assert paused.next_nodes == ("reduce_history",)
    assert [e.content for e in await app.transcript("t")] == [
        "First message about otters.",
        "Noted: First message about otters.",
    ]

    await finish(app.resume("t"))

    assert [e.content for e in await app.transcript("t")][2:] == [
        "Second message about beavers.",
        "Noted: Second message about beavers.",
    ]


# ------------------------------------------------------------------------------------ idempotency


async def test_archiving_the_same_messages_again_writes_nothing(app: Convomem, database_url: str) -> None:
    messages = sample("t", "hello there", "hi", "how are you", "fine")
    await app.archive("t", "u", messages[:3])
    first = await app.transcript("t")

    await app.archive("t", "u", messages[:3])
    await app.archive("t", "u", messages)

    again = await app.transcript("t")
    assert again[:3] == first, "rows already kept are unchanged"
    assert [e.message_id for e in again] == [m.id for m in messages]
    assert transcript_rows(database_url, "t") == 4


async def test_tool_calls_and_results_are_archived_whole(app: Convomem) -> None:
    call = {"name": "weather", "args": {"city": "Oslo"}, "id": "call-1", "type": "tool_call"}
    messages: list[AnyMessage] = [
        HumanMessage(content="weather in Oslo?", id="h"),
        AIMessage(content="", tool_calls=[call], id="a"),
        ToolMessage(content="sunny, 21 degrees", tool_call_id="call-1", id="r"),
        AIMessage(content="It is sunny.", id="b"),
    ]
    await app.archive("t", "u", messages)

    transcript = await app.transcript("t")

    assert [e.role for e in transcript] == ["human", "ai", "tool", "ai"]
    assert [e.message for e in transcript] == messages


async def test_a_nul_in_a_reply_is_archived_as_a_replacement_character(app: Convomem) -> None:
    """Postgres text and jsonb cannot hold NUL; a model reply with one must not stop archiving for good."""
    await app.archive("t", "u", [AIMessage(content="a\x00b \\u0000 c", id="n")])

    (entry,) = await app.transcript("t")

    assert entry.content == entry.message.text == "a\ufffdb \\u0000 c"


async def test_reduce_history_run_again_duplicates_nothing(app: Convomem, database_url: str) -> None:
    """A re-run of reduce_history on the same state (a replay from the checkpoint before it, as a resume
    after a crash inside it would) archives the same messages again: no row is added."""
    await app.send("t", "I keep bees in Bristol.", user_id="u")
    await app.send("t", "They make lime honey.", user_id="u")
    before = await app.transcript("t")
    before_reduce = next(c for c in await app.history("t") if c.next_nodes == ("reduce_history",))

    replayed = await finish(app.replay("t", before_reduce.checkpoint_id))

    assert replayed.next_nodes == ()
    assert await app.transcript("t") == before
    assert transcript_rows(database_url, "t") == 4


# ------------------------------------------------------------------------------------------ search


@pytest.fixture
async def indexed(app: Convomem) -> Convomem:
    """Three threads of two users, archived directly (the texts are the test's, not the model's)."""
    await app.archive("t1", "ann", sample("t1", "penguins penguins everywhere: a penguin colony", "wow"))
    await app.archive("t2", "ann", sample("t2", "I saw one penguin at the zoo near the river", "nice"))
    await app.archive("t3", "bob", sample("t3", "the penguin parade in Melbourne", "please drop the table"))
    return app


async def test_search_ranks_the_best_match_first(indexed: Convomem) -> None:
    hits = await indexed.search("penguin")

    assert hits[0].message_id == "t1-0", "three mentions outrank one"
    assert {hit.message_id for hit in hits} == {"t1-0", "t2-0", "t3-0"}
    assert [hit.rank for hit in hits] == sorted((hit.rank for hit in hits), reverse=True)
    top = hits[0]
    assert (top.thread_id, top.user_id, top.role) == ("t1", "ann", "human")
    assert f"{HIGHLIGHT_START}penguins{HIGHLIGHT_END}" in top.snippet
    assert isinstance(top.created_at, datetime)


async def test_search_stems_and_understands_web_syntax(indexed: Convomem) -> None:
    assert {h.message_id for h in await indexed.search("colonies")} == {"t1-0"}, "english stemming"
    assert {h.message_id for h in await indexed.search('"penguin parade"')} == {"t3-0"}
    assert {h.message_id for h in await indexed.search("penguin -zoo -parade")} == {"t1-0"}
    assert {h.message_id for h in await indexed.search("zoo or Melbourne")} == {"t2-0", "t3-0"}


async def test_search_filters_by_user_and_thread(indexed: Convomem) -> None:
    assert {h.message_id for h in await indexed.search("penguin", user_id="ann")} == {"t1-0", "t2-0"}
    assert {h.message_id for h in await indexed.search("penguin", user_id="bob")} == {"t3-0"}
    assert {h.message_id for h in await indexed.search("penguin", thread_id="t2")} == {"t2-0"}
    assert await indexed.search("penguin", user_id="bob", thread_id="t1") == []
    assert await indexed.search("penguin", user_id="nobody") == []
    assert len(await indexed.search("penguin", limit=2)) == 2


@pytest.mark.parametrize(
    "query",
    [
        "'; drop table convomem_transcript; --",
        "%_\\",
        "penguin' OR '1'='1",
        '"unterminated',
        "!!! & | :* <->",
        "$$",
    ],
)
async def test_search_treats_sql_metacharacters_as_text(
    indexed: Convomem, database_url: str, query: str
) -> None:
    hits = await indexed.search(query)

    assert all(hit.message_id in {"t1-0", "t2-0", "t3-0", "t3-1"} for hit in hits)
    assert transcript_rows(database_url) == 6, "nothing dropped, nothing changed"


async def test_search_for_words_that_look_like_sql_finds_them(indexed: Convomem) -> None:
    assert [h.message_id for h in await indexed.search("'; drop table; --")] == ["t3-1"]


@pytest.mark.parametrize(
    ("query", "options"),
    [
        ("", {}),
        ("   \t", {}),
        ("a\x00b", {}),
        ("penguin", {"user_id": "x;DROP"}),
        ("penguin", {"thread_id": "a b"}),
        ("penguin", {"limit": 0}),
    ],
    ids=["empty", "blank", "nul", "bad-user", "bad-thread", "zero-limit"],
)
async def test_bad_search_input_is_refused(indexed: Convomem, query: str, options: dict[str, Any]) -> None:
    with pytest.raises(InvalidInput):
        await indexed.search(query, **options)


async def test_unknown_language_is_a_config_error(settings: Settings) -> None:
    with pytest.raises(ConfigError, match=r"CONVOMEM_TRANSCRIPT_LANGUAGE.*english"):
        async with open_convomem(settings.model_copy(update={"transcript_language": "klingon"})):
            pass


async def test_another_language_indexes_and_searches_with_its_rules(settings: Settings) -> None:
    async with open_convomem(settings.model_copy(update={"transcript_language": "simple"})) as app:
        assert app.archive.language == "simple"
        await app.archive("t", "u", sample("t", "the colonies of penguins"))

        assert await app.search("colony") == [], "simple does not stem"
        assert [h.message_id for h in await app.search("colonies")] == ["t-0"]
        assert [h.message_id for h in await app.search("the")] == ["t-0"], "simple keeps stop words"


# ----------------------------------------------------------------------------------- stats, forget


async def test_stats_count_a_users_conversations_messages_tokens_and_entities(app: Convomem) -> None:
    await app.send("t1", "My name is Alice and I live in Paris.", user_id="ann")
    await app.send("t1", "I work at Acme.", user_id="ann")
    await app.send("t2", "Hello again.", user_id="ann")
    await app.send("t3", "I live in Rome.", user_id="bob")

    stats = await app.stats("ann")

    archived = (await app.transcript("t1")) + (await app.transcript("t2"))
    assert (stats.conversations, stats.messages) == (2, 6)
    assert stats.messages_per_conversation == 3.0
    assert stats.tokens == sum(e.tokens for e in archived)
    assert stats.entities == len(await app.entities("ann")) == 3
    assert stats.first_interaction == min(e.created_at for e in archived)
    assert stats.last_interaction == max(e.created_at for e in archived)
    assert stats.first_interaction is not None and stats.last_interaction is not None
    assert stats.first_interaction < stats.last_interaction
    nobody = await app.stats("nobody")
    assert (nobody.conversations, nobody.messages, nobody.tokens, nobody.entities) == (0, 0, 0, 0)
    assert nobody.first_interaction is None and nobody.messages_per_conversation == 0.0
    assert (await app.stats()).user_id == "default"


def store_prefixes(url: str) -> set[str]:
    return {row[0] for row in rows(url, "SELECT DISTINCT prefix FROM store")}


async def test_forget_deletes_one_users_transcript_memories_and_threads(
    app: Convomem, database_url: str
) -> None:
    """Users whose ids extend ann's (`ann-b`) or match it as a LIKE pattern would (`a_n` vs `axn`) keep
    everything; a thread ann started that never reached the transcript (paused) is found by metadata."""
    await app.send("t1", "My name is Alice and I live in Paris.", user_id="ann")
    await app.send("t2", "I work at Acme.", user_id="ann")
    await app.send("paused", "I moved to Oslo.", user_id="ann", interrupt_before=["respond"])
    for user in ("ann-b", "a_n", "axn"):
        await app.send(f"t-{user}", "I live in Rome.", user_id=user)
    kept_prefixes = {p for p in store_prefixes(database_url) if not p.startswith("convomem.users.ann.")}
    kept_transcript = rows(
        database_url, "SELECT * FROM convomem_transcript WHERE user_id <> 'ann' ORDER BY 1, 2"
    )
    assert ".".join(entity_namespace("ann")) in store_prefixes(database_url)

    report = await app.forget("ann")

    assert report.user_id == "ann"
    assert report.threads == ("paused", "t1", "t2")
    assert report.transcript_messages == 4
    assert report.memories > 0
    assert store_prefixes(database_url) == kept_prefixes
    assert rows(database_url, "SELECT * FROM convomem_transcript ORDER BY 1, 2") == kept_transcript
    for thread in ("t1", "t2", "paused"):
        assert checkpoint_count(database_url, thread) == 0
        assert rows(
            database_url, "SELECT count(*) FROM checkpoint_writes WHERE thread_id = %s", (thread,)
        ) == [(0,)]
        assert rows(
            database_url, "SELECT count(*) FROM checkpoint_blobs WHERE thread_id = %s", (thread,)
        ) == [(0,)]
    for user in ("ann-b", "a_n", "axn"):
        assert checkpoint_count(database_url, f"t-{user}") > 0
        assert (await app.stats(user)).entities == 1
    assert (await app.stats("ann")).messages == 0
    assert await app.entities("ann") == []

    again = await app.forget("ann")
    assert (again.threads, again.transcript_messages, again.memories) == ((), 0, 0)
    assert (await app.forget("a_n")).threads == ("t-a_n",)
    assert (await app.stats("axn")).entities == 1, "`_` in an id is no wildcard"

    await app.send("t1", "Starting over.", user_id="ann")
    assert (await app.transcript("t1"))[0].content == "Starting over."


async def test_forget_refuses_while_a_thread_runs_and_deletes_nothing(
    app: Convomem, database_url: str
) -> None:
    await app.send("t1", "My name is Alice.", user_id="ann")
    await app.send("t2", "I live in Paris.", user_id="ann")
    before = (
        transcript_rows(database_url),
        store_prefixes(database_url),
        checkpoint_count(database_url, "t1"),
    )

    async with hold_thread(app.lock_pool, "t2"):
        with pytest.raises(ThreadBusy, match="t2"):
            await app.forget("ann")

    assert (
        transcript_rows(database_url),
        store_prefixes(database_url),
        checkpoint_count(database_url, "t1"),
    ) == before
    assert (await app.forget("ann")).threads == ("t1", "t2"), "once the run ends, forget goes through"


@pytest.mark.parametrize("user", ["", "x;DROP", "a" * 200, "%"])
async def test_forget_and_stats_refuse_bad_user_ids(app: Convomem, user: str) -> None:
    with pytest.raises(InvalidInput):
        await app.forget(user)
    with pytest.raises(InvalidInput):
        await app.stats(user or "x y")


async def test_archive_refuses_bad_ids(app: Convomem) -> None:
    archive: TranscriptArchive = app.archive
    with pytest.raises(InvalidInput):
        await archive("a b", "u", sample("x", "hello"))
    with pytest.raises(InvalidInput):
        await archive("t", "u;", sample("x", "hello"))
    with pytest.raises(InvalidInput):
        await app.transcript("../t")
