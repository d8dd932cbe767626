"""Retention on real Postgres: prune old threads, never one waiting on an interrupt or running, dry runs
change nothing, a kept thread goes on, DeltaChannel state survives, bad input and bad rows are handled."""

from __future__ import annotations

import asyncio
import operator
from collections.abc import Sequence
from datetime import UTC, datetime, timedelta
from typing import Annotated, Any, TypedDict

import psycopg
import pytest
from langchain_core.runnables import RunnableConfig
from langgraph.channels.delta import DeltaChannel
from langgraph.checkpoint.postgres.aio import AsyncPostgresSaver
from langgraph.graph import END, START, StateGraph
from langgraph.graph.state import CompiledStateGraph

from checkpoint.locks import LOCK_NAMESPACE, thread_lock_key
from checkpoint.persistence import Persistence, open_persistence
from checkpoint.retention import (
    PruneReport,
    PruneSweeper,
    Strategy,
    ThreadPruned,
    parse_duration,
    prune_threads,
)
from graphs.api import Convomem
from nodes.errors import ConfigError, InvalidInput
from tests.fake_openai import FakeOpenAIServer
from tests.integration.support import checkpoint_count, message_texts, rows

FIRST = "My name is Alice and I work at Acme."
SECOND = "Last year I moved to Lisbon with Bruno."
THIRD = "what did i tell you so far?"
DAY = timedelta(days=1)


def later() -> datetime:
    """A `now` two days ahead: every thread written so far is older than one day."""
    return datetime.now(UTC) + 2 * DAY


async def prune(
    persistence: Persistence,
    strategy: Strategy = "keep_latest",
    *,
    dry_run: bool = False,
    now: datetime | None = None,
    older_than: timedelta = DAY,
) -> PruneReport:
    return await prune_threads(
        persistence.pool,
        persistence.checkpointer,
        older_than=older_than,
        strategy=strategy,
        dry_run=dry_run,
        now=now or later(),
    )


def digest(url: str) -> list[list[tuple[Any, ...]]]:
    """Every checkpoint, write and blob row (contents hashed): equal digests, untouched tables."""
    return [
        rows(
            url,
            "SELECT thread_id, checkpoint_ns, checkpoint_id, parent_checkpoint_id, md5(checkpoint::text), "
            "md5(metadata::text) FROM checkpoints ORDER BY 1, 2, 3",
        ),
        rows(
            url,
            "SELECT thread_id, checkpoint_ns, checkpoint_id, task_id, idx, md5(blob) FROM checkpoint_writes "
            "ORDER BY 1, 2, 3, 4, 5",
        ),
        rows(
            url,
            "SELECT thread_id, checkpoint_ns, channel, version, md5(blob) FROM checkpoint_blobs "
            "ORDER BY 1, 2, 3, 4",
        ),
    ]


def thread_rows(url: str, thread_id: str) -> tuple[int, int, int]:
    counts = [
        rows(url, f"SELECT count(*) FROM {table} WHERE thread_id = %s", (thread_id,))[0][0]
        for table in ("checkpoints", "checkpoint_writes", "checkpoint_blobs")
    ]
    return counts[0], counts[1], counts[2]


def pruned(report: PruneReport) -> dict[str, ThreadPruned]:
    return {thread.thread_id: thread for thread in report.pruned}


def skipped(report: PruneReport) -> dict[str, str]:
    return {thread.thread_id: thread.reason for thread in report.skipped}


# ----------------------------------------------------------------------------- durations


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("30d", timedelta(days=30)),
        ("12h", timedelta(hours=12)),
        ("90m", timedelta(minutes=90)),
        ("2w", timedelta(weeks=2)),
        ("45s", timedelta(seconds=45)),
        (" 1w3d ", timedelta(days=10)),
        ("1D12H", timedelta(days=1, hours=12)),
    ],
)
def test_parse_duration(text: str, expected: timedelta) -> None:
    assert parse_duration(text) == expected


@pytest.mark.parametrize(
    "text",
    [
        "",
        "   ",
        "30",
        "d",
        "abc",
        "-3d",
        "3x",
        "1.5d",
        "30 days",
        "0d",
        "0h0m",
        "1y",
        "36501d",
        "9" * 5000 + "d",
    ],
)
def test_parse_duration_refuses_nonsense(text: str) -> None:
    with pytest.raises(InvalidInput, match=r"(?i)duration"):
        parse_duration(text)


@pytest.mark.parametrize("older_than", [timedelta(0), -DAY, timedelta(days=40000)])
async def test_prune_refuses_a_nonsense_age(persistence: Persistence, older_than: timedelta) -> None:
    with pytest.raises(InvalidInput, match="older_than"):
        await prune(persistence, older_than=older_than)


async def test_prune_refuses_an_unknown_strategy(persistence: Persistence) -> None:
    with pytest.raises(InvalidInput, match="keep_latest or delete"):
        await prune(persistence, "everything")  # type: ignore[arg-type]


# ----------------------------------------------------------------------------- keep_latest / delete


async def test_keep_latest_leaves_one_checkpoint_and_the_thread_goes_on(
    app: Convomem, fake_model: FakeOpenAIServer, database_url: str
) -> None:
    await app.send("t", FIRST)
    await app.send("t", SECOND)
    before = await app.state("t")
    count = checkpoint_count(database_url, "t")

    report = await prune(app.persistence)

    assert report.examined == 1 and not report.skipped
    assert pruned(report)["t"].checkpoints == count - 1
    assert report.checkpoints == count - 1 and report.bytes > 0
    assert checkpoint_count(database_url, "t") == 1
    after = await app.state("t")
    assert after.config == before.config
    assert after.parent_config is None
    assert after.values == before.values
    assert after.next == ()
    # Nothing left to drop until the thread grows again: the next sweep does not even look at it.
    assert (await prune(app.persistence)).examined == 0

    ended = await app.send("t", THIRD)
    assert ended.next_nodes == () and ended.reply
    prompt = fake_model.requests_of("respond")[-1]["messages"]
    assert message_texts(prompt, "user") == [FIRST, SECOND, THIRD]
    assert len(await app.history("t")) > 1
    assert (await prune(app.persistence)).examined == 1


async def test_delete_removes_every_row_of_old_threads_only(app: Convomem, database_url: str) -> None:
    await app.send("old", FIRST)
    await asyncio.sleep(0.01)
    middle = datetime.now(UTC)
    await asyncio.sleep(0.01)
    await app.send("new", FIRST)
    new_rows = thread_rows(database_url, "new")

    report = await prune(app.persistence, "delete", now=middle + DAY)

    assert set(pruned(report)) == {"old"} and report.examined == 1
    assert thread_rows(database_url, "old") == (0, 0, 0)
    assert thread_rows(database_url, "new") == new_rows
    assert (await app.state("old")).values == {}
    ended = await app.send("old", SECOND)  # the id can start over
    assert ended.next_nodes == ()


async def test_dry_run_changes_nothing_and_predicts_the_real_run(app: Convomem, database_url: str) -> None:
    for thread in ("a", "b"):
        await app.send(thread, FIRST)
        await app.send(thread, SECOND)
    for strategy in ("keep_latest", "delete"):
        tables = digest(database_url)
        dry: PruneReport = await prune(app.persistence, strategy, dry_run=True)  # type: ignore[arg-type]
        assert dry.dry_run and set(pruned(dry)) == {"a", "b"}
        assert digest(database_url) == tables
    real = await prune(app.persistence, "keep_latest")
    assert not real.dry_run and set(pruned(real)) == {"a", "b"}
    assert digest(database_url) != tables
    assert (await prune(app.persistence, "keep_latest", dry_run=True)).pruned == ()  # nothing more to go


async def test_dry_run_numbers_are_exact(app: Convomem) -> None:
    await app.send("a", FIRST)
    await app.send("a", SECOND)
    now = later()
    dry = await prune(app.persistence, dry_run=True, now=now)
    real = await prune(app.persistence, now=now)
    assert [(t.thread_id, t.checkpoints, t.bytes) for t in dry.pruned] == [
        (t.thread_id, t.checkpoints, t.bytes) for t in real.pruned
    ]


# ----------------------------------------------------------------------------- never prune


@pytest.mark.parametrize("strategy", ["keep_latest", "delete"])
async def test_thread_waiting_on_an_interrupt_is_skipped(
    app: Convomem, database_url: str, strategy: Strategy
) -> None:
    await app.send("idle", FIRST)
    await app.send("idle", SECOND)
    await app.send("waiting", FIRST)
    ended = await app.send("waiting", SECOND, review_memory=True)
    assert ended.interrupts
    waiting_rows = digest(database_url)[0]

    report = await prune(app.persistence, strategy)

    assert skipped(report) == {"waiting": "interrupt"}
    assert set(pruned(report)) == {"idle"}
    assert [row for row in digest(database_url)[0] if row[0] == "waiting"] == [
        row for row in waiting_rows if row[0] == "waiting"
    ]
    assert await app.pending_interrupts("waiting") == ended.interrupts

    resumed = [e async for e in app.resume("waiting", "approve")]
    assert resumed[-1].next_nodes == ()  # type: ignore[union-attr]
    assert set(pruned(await prune(app.persistence, strategy))) == {"waiting"}


async def test_thread_with_a_running_run_is_skipped(app: Convomem, database_url: str) -> None:
    await app.send("busy", FIRST)
    await app.send("busy", SECOND)
    await app.send("free", FIRST)
    await app.send("free", SECOND)
    before = thread_rows(database_url, "busy")
    key = (LOCK_NAMESPACE, thread_lock_key("busy"))
    async with await psycopg.AsyncConnection.connect(database_url, autocommit=True) as holder:
        await holder.execute("SELECT pg_advisory_lock(%s, %s)", key)  # another process's run
        report = await prune(app.persistence, "delete")
        assert skipped(report) == {"busy": "running"}
        assert set(pruned(report)) == {"free"}
        assert thread_rows(database_url, "busy") == before
        await holder.execute("SELECT pg_advisory_unlock(%s, %s)", key)
    assert set(pruned(await prune(app.persistence, "delete"))) == {"busy"}


# ----------------------------------------------------------------------------- DeltaChannel


def concat(state: list[str], writes: Sequence[list[str]]) -> list[str]:
    return [*state, *(item for write in writes for item in write)]


class Tally(TypedDict):
    items: Annotated[list[str], DeltaChannel(concat, snapshot_frequency=3)]
    turns: Annotated[int, operator.add]


def delta_graph(persistence: Persistence) -> CompiledStateGraph[Any, Any, Any, Any]:
    """A graph whose `items` is stored as deltas: a snapshot every 3 updates, writes replayed between."""

    def add(state: Tally) -> dict[str, Any]:
        return {"items": [f"item-{len(state['items'])}"], "turns": 1}

    builder = StateGraph(Tally)
    builder.add_node("add", add)
    builder.add_edge(START, "add")
    builder.add_edge("add", END)
    return builder.compile(checkpointer=persistence.checkpointer)


async def run_turns(graph: CompiledStateGraph[Any, Any, Any, Any], config: RunnableConfig, n: int) -> None:
    for turn in range(n):
        await graph.ainvoke({"items": [f"user-{turn}"], "turns": 0}, config)


async def test_keep_latest_keeps_what_a_delta_channel_needs(
    persistence: Persistence, database_url: str
) -> None:
    graph = delta_graph(persistence)
    config: RunnableConfig = {"configurable": {"thread_id": "delta"}}
    await run_turns(graph, config, 5)
    before = (await graph.aget_state(config)).values
    assert len(before["items"]) == 10 and before["turns"] == 5
    count = checkpoint_count(database_url, "delta")

    with pytest.raises(NotImplementedError):  # upstream alone refuses such threads
        await AsyncPostgresSaver(persistence.pool, serde=persistence.checkpointer.serde).aprune(["delta"])

    report = await prune(persistence)

    kept = checkpoint_count(database_url, "delta")
    assert 1 <= kept < count
    assert pruned(report)["delta"].checkpoints == count - kept
    assert (await graph.aget_state(config)).values == before
    await run_turns(graph, config, 2)
    after = (await graph.aget_state(config)).values
    assert after["items"][: len(before["items"])] == before["items"]
    assert len(after["items"]) == 14 and after["turns"] == 7

    await persistence.checkpointer.aprune(["delta"])  # the saver itself, outside retention
    assert (await graph.aget_state(config)).values == after


# ----------------------------------------------------------------------------- absent and corrupted


async def test_database_without_tables_is_a_clear_error(database_url: str) -> None:
    async with open_persistence(database_url, setup=False) as bare:
        with pytest.raises(ConfigError, match="convomem db setup"):
            await prune(bare)


async def test_empty_database_prunes_nothing(persistence: Persistence) -> None:
    report = await prune(persistence, "delete")
    assert report.examined == 0 and report.pruned == () and report.skipped == ()
    assert report.checkpoints == 0 and report.bytes == 0


async def test_corrupted_blob_does_not_stop_a_prune(app: Convomem, database_url: str) -> None:
    for thread in ("corrupt", "fine"):
        await app.send(thread, FIRST)
        await app.send(thread, SECOND)
    rows(
        database_url,
        "UPDATE checkpoint_blobs SET blob = %s WHERE thread_id = 'corrupt' RETURNING 1",
        (b"\x00garbage",),
    )

    report = await prune(app.persistence)

    assert set(pruned(report)) == {"corrupt", "fine"}
    assert checkpoint_count(database_url, "corrupt") == 1
    assert message_texts((await app.state("fine")).values["messages"], "human") == [FIRST, SECOND]


async def test_thread_upstream_cannot_read_is_skipped_and_others_pruned(
    app: Convomem, database_url: str
) -> None:
    for thread in ("broken", "fine"):
        await app.send(thread, FIRST)
        await app.send(thread, SECOND)
    broken = digest(database_url)
    rows(
        database_url,
        "UPDATE checkpoints SET checkpoint = jsonb_set(checkpoint, '{channel_versions}', '\"oops\"') "
        "WHERE thread_id = 'broken' AND checkpoint_id = (SELECT min(checkpoint_id) FROM checkpoints "
        "WHERE thread_id = 'broken') RETURNING 1",
    )

    report = await prune(app.persistence)

    assert set(pruned(report)) == {"fine"}
    assert [(s.thread_id, s.reason) for s in report.skipped] == [("broken", "error")]
    assert report.skipped[0].detail
    assert checkpoint_count(database_url, "broken") == len([r for r in broken[0] if r[0] == "broken"])


# ----------------------------------------------------------------------------- sweeper


async def test_sweeper_prunes_in_the_background_until_stopped(app: Convomem, database_url: str) -> None:
    await app.send("swept", FIRST)
    await app.send("swept", SECOND)
    reports: list[PruneReport] = []
    sweeper = PruneSweeper(
        app.persistence.pool,
        app.persistence.checkpointer,
        older_than=timedelta(milliseconds=1),
        interval=timedelta(milliseconds=50),
        on_report=reports.append,
    )
    async with sweeper:
        assert sweeper.running
        for _ in range(200):
            if any("swept" in pruned(report) for report in reports):
                break
            await asyncio.sleep(0.05)
    assert not sweeper.running
    assert checkpoint_count(database_url, "swept") == 1
    assert any("swept" in pruned(report) for report in reports)
    seen = len(reports)
    await asyncio.sleep(0.2)
    assert len(reports) == seen  # stopped means stopped


@pytest.mark.parametrize(
    ("older_than", "interval"), [(DAY, timedelta(0)), (timedelta(0), DAY), (-DAY, timedelta(minutes=1))]
)
async def test_sweeper_refuses_a_nonsense_schedule(
    persistence: Persistence, older_than: timedelta, interval: timedelta
) -> None:
    with pytest.raises(InvalidInput):
        PruneSweeper(persistence.pool, persistence.checkpointer, older_than=older_than, interval=interval)


async def test_run_records_older_than_the_cutoff_go_with_the_prune(app: Convomem, database_url: str) -> None:
    await app.send("old", FIRST)
    await asyncio.sleep(0.01)
    middle = datetime.now(UTC)
    await asyncio.sleep(0.01)
    await app.send("new", FIRST)
    count = "SELECT thread_id FROM convomem_run_records ORDER BY started_at"
    assert rows(database_url, count) == [("old",), ("new",)]

    dry = await prune(app.persistence, dry_run=True, now=middle + DAY)
    assert dry.run_records == 1
    assert rows(database_url, count) == [("old",), ("new",)]

    report = await prune(app.persistence, now=middle + DAY)
    assert report.run_records == 1
    assert rows(database_url, count) == [("new",)]
