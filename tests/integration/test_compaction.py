"""Compaction of superseded step checkpoints on real threads: what stays, what goes, what still works."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator
from typing import Any, TypedDict

import pytest
from langchain_core.runnables import RunnableConfig
from langgraph.checkpoint.serde.types import INTERRUPT
from langgraph.graph import START, StateGraph

from checkpoint.compaction import CompactionReport, compact_thread
from checkpoint.locks import RUN_ID_KEY, hold_thread
from checkpoint.persistence import Persistence
from graphs.api import Convomem, open_convomem
from graphs.settings import Settings
from tests.integration.support import (
    assert_linear_history,
    checkpoint_ids,
    finish,
    message_texts,
    orphan_writes,
    rows,
)

STEPS_PER_TURN = 6  # input, then one per superstep (see test_time_travel.ONE_TURN)


@pytest.fixture
async def app(settings: Settings) -> AsyncIterator[Convomem]:
    """The API without its own periodic compaction, so each test compacts exactly when it says."""
    async with open_convomem(settings.model_copy(update={"compact_every": 0})) as opened:
        yield opened


def runs(url: str, thread_id: str) -> list[list[str]]:
    """The root checkpoint ids of each run, runs and ids oldest first."""
    found = rows(
        url,
        f"SELECT metadata ->> '{RUN_ID_KEY}', checkpoint_id FROM checkpoints "
        "WHERE thread_id = %s AND checkpoint_ns = '' ORDER BY checkpoint_id",
        (thread_id,),
    )
    grouped: dict[str, list[str]] = {}
    for run_id, checkpoint_id in found:
        grouped.setdefault(run_id, []).append(checkpoint_id)
    return list(grouped.values())


def unbacked_references(url: str, thread_id: str) -> set[tuple[str, str, str]]:
    """(checkpoint, channel, version) a checkpoint lists with neither an inline value nor a blob (channels
    LangGraph stores nothing for, such as spent branch triggers, and any a compaction broke)."""
    found = rows(
        url,
        "SELECT c.checkpoint_id, v.key, v.value FROM checkpoints c "
        "CROSS JOIN LATERAL jsonb_each_text(c.checkpoint -> 'channel_versions') AS v "
        "WHERE c.thread_id = %s AND NOT (c.checkpoint -> 'channel_values') ? v.key AND NOT EXISTS ("
        "SELECT 1 FROM checkpoint_blobs b WHERE b.thread_id = c.thread_id "
        "AND b.checkpoint_ns = c.checkpoint_ns AND b.channel = v.key AND b.version = v.value)",
        (thread_id,),
    )
    return {(row[0], row[1], row[2]) for row in found}


def stored_bytes(url: str, thread_id: str) -> int:
    """What the thread's rows take, measured as retention measures it (whole rows)."""
    return sum(
        int(
            rows(
                url,
                f"SELECT coalesce(sum(pg_column_size(t.*)), 0) FROM {table} t WHERE thread_id = %s",
                (thread_id,),
            )[0][0]
        )
        for table in ("checkpoints", "checkpoint_writes", "checkpoint_blobs")
    )


async def channel_values(app: Convomem, thread_id: str, ids: list[str]) -> dict[str, dict[str, Any]]:
    """Each checkpoint as the saver loads it (its blobs included)."""
    loaded = {}
    for checkpoint_id in ids:
        found = await app.persistence.checkpointer.aget_tuple(app.config(thread_id, checkpoint_id))
        assert found is not None, checkpoint_id
        loaded[checkpoint_id] = found.checkpoint["channel_values"]
    return loaded


async def talk(app: Convomem, thread_id: str, turns: int, start: int = 0) -> None:
    for turn in range(start, start + turns):
        await app.send(thread_id, f"Turn {turn}: I visited city number {turn} with friend {turn}.")


def nothing(thread_id: str) -> CompactionReport:
    """The report of a compaction that found nothing to delete."""
    return CompactionReport(thread_id)


async def test_old_runs_keep_their_turn_boundary_and_everything_still_works(
    app: Convomem, database_url: str
) -> None:
    await talk(app, "t", 30)
    before_runs = runs(database_url, "t")
    assert len(before_runs) == 30 and {len(run) for run in before_runs} == {STEPS_PER_TURN}
    before = await app.state("t")
    expected = [run[-1:] for run in before_runs[:25]] + before_runs[25:]
    kept = [checkpoint_id for run in expected for checkpoint_id in run]
    loaded_before = await channel_values(app, "t", kept)
    bytes_before = stored_bytes(database_url, "t")
    unbacked = {ref for ref in unbacked_references(database_url, "t") if ref[0] in kept}

    report = await compact_thread(app.persistence.pool, "t", keep_recent_runs=5)

    assert runs(database_url, "t") == expected
    assert report.checkpoints_deleted == 25 * (STEPS_PER_TURN - 1)
    assert report.writes_deleted > 0 and report.blobs_deleted > 0 and report.bytes_freed > 0
    assert report.skipped is None
    assert stored_bytes(database_url, "t") < bytes_before
    assert orphan_writes(database_url, "t") == 0
    assert unbacked_references(database_url, "t") == unbacked, "no blob of a kept checkpoint went"
    assert await channel_values(app, "t", kept) == loaded_before
    after = await app.state("t")
    assert (after.values, after.next, after.config) == (before.values, before.next, before.config)
    # Parents of deleted steps are re-linked: the kept checkpoints still form one chain.
    assert assert_linear_history(database_url, "t") == kept
    history = await app.history("t", limit=500)
    assert [c.checkpoint_id for c in history] == kept[::-1]

    # An old turn boundary: its state loads, replay runs nothing new, fork branches from it.
    boundary = expected[2][0]
    old = await app.graph.aget_state(app.config("t", boundary))
    assert old.next == () and "Turn 2:" in message_texts(old.values["messages"], "human")[-1]
    assert old.parent_config is not None
    assert old.parent_config["configurable"]["checkpoint_id"] == expected[1][0]
    await app.send("t", "One more turn after compaction.")
    replayed = await finish(app.replay("t", boundary))
    assert replayed.next_nodes == ()
    forked = await finish(app.fork("t", boundary, "A different third turn."))
    assert forked.next_nodes == ()
    humans = message_texts((await app.state("t")).values["messages"], "human")
    assert humans[-1] == "A different third turn." and "Turn 2:" in humans[-2]
    # The oldest kept checkpoint lost every ancestor: LangGraph loads and lists it with no parent.
    first = await app.graph.aget_state(app.config("t", expected[0][0]))
    assert first.parent_config is None and first.next == ()
    assert orphan_writes(database_url, "t") == 0


async def test_compaction_is_idempotent_and_keeps_checkpoints_without_run_id(
    app: Convomem, database_url: str
) -> None:
    assert await compact_thread(app.persistence.pool, "never-used") == nothing("never-used")
    await talk(app, "t", 5)
    assert await compact_thread(app.persistence.pool, "t", keep_recent_runs=5) == nothing("t")
    old_step = runs(database_url, "t")[0][2]
    rows(
        database_url,
        f"UPDATE checkpoints SET metadata = metadata - '{RUN_ID_KEY}' WHERE checkpoint_id = %s "
        "RETURNING checkpoint_id",
        (old_step,),
    )

    first = await compact_thread(app.persistence.pool, "t", keep_recent_runs=2)
    ids = checkpoint_ids(database_url, "t")
    second = await compact_thread(app.persistence.pool, "t", keep_recent_runs=2)

    assert first.checkpoints_deleted == 3 * (STEPS_PER_TURN - 1) - 1
    assert old_step in ids, "a checkpoint without run id is kept"
    assert second == nothing("t")
    assert checkpoint_ids(database_url, "t") == ids
    last = await compact_thread(app.persistence.pool, "t", keep_recent_runs=0)
    assert last.checkpoints_deleted == 2 * (STEPS_PER_TURN - 1), "the head is its run's last"
    assert [len(run) for run in runs(database_url, "t")] == [1] * 6, "five boundaries, one without run id"


async def test_a_busy_thread_is_skipped_unless_the_caller_holds_its_lock(
    app: Convomem, database_url: str
) -> None:
    await talk(app, "t", 3)
    ids = checkpoint_ids(database_url, "t")

    async with hold_thread(app.lock_pool, "t"):
        busy = await compact_thread(app.persistence.pool, "t", keep_recent_runs=1)
        assert checkpoint_ids(database_url, "t") == ids
        held = await compact_thread(app.persistence.pool, "t", keep_recent_runs=1, lock=False)

    assert busy == CompactionReport("t", skipped="busy") and str(busy) == "skipped: busy"
    assert held.checkpoints_deleted == 2 * (STEPS_PER_TURN - 1)
    assert len(checkpoint_ids(database_url, "t")) == len(ids) - held.checkpoints_deleted


async def test_a_checkpoint_holding_an_interrupt_is_kept(app: Convomem, database_url: str) -> None:
    await talk(app, "t", 2)
    paused = await app.send("t", "My name is Alice and I work at Acme.", review_memory=True)
    assert paused.interrupts
    waiting = paused.checkpoint_id

    await compact_thread(app.persistence.pool, "t", keep_recent_runs=0)

    assert [len(run) for run in runs(database_url, "t")] == [1, 1, 1]
    assert await app.pending_interrupts("t") == paused.interrupts
    await finish(app.resume("t", "approve"))
    await talk(app, "t", 2, start=2)
    # Make the interrupt a middle step of an old run (as if the resume had been the same run).
    interrupted, resumed = runs(database_url, "t")[2:4]
    rows(
        database_url,
        "UPDATE checkpoints SET metadata = metadata || jsonb_build_object(%s::text, "
        "(SELECT metadata -> %s FROM checkpoints WHERE checkpoint_id = %s)) WHERE checkpoint_id = ANY(%s) "
        "RETURNING checkpoint_id",
        (RUN_ID_KEY, RUN_ID_KEY, interrupted[0], resumed),
    )

    report = await compact_thread(app.persistence.pool, "t", keep_recent_runs=0)

    assert report.checkpoints_deleted == len(resumed) - 1 + 2 * (STEPS_PER_TURN - 1)
    assert waiting in checkpoint_ids(database_url, "t")
    channels = rows(
        database_url, "SELECT channel FROM checkpoint_writes WHERE checkpoint_id = %s", (waiting,)
    )
    assert (INTERRUPT,) in channels
    assert orphan_writes(database_url, "t") == 0


class Count(TypedDict):
    n: int


async def test_subgraph_calls_of_old_runs_go_with_the_root_step_that_made_them(
    persistence: Persistence, database_url: str
) -> None:
    inner = StateGraph(Count)
    inner.add_node("a", lambda s: {"n": s["n"] + 1})
    inner.add_node("b", lambda s: {"n": s["n"] + 1})
    inner.add_edge(START, "a")
    inner.add_edge("a", "b")
    outer = StateGraph(Count)
    outer.add_node("double", lambda s: {"n": s["n"] * 2})
    outer.add_node("inner", inner.compile())
    outer.add_edge(START, "double")
    outer.add_edge("double", "inner")
    graph = outer.compile(checkpointer=persistence.checkpointer)
    config: RunnableConfig = {"configurable": {"thread_id": "s"}}
    for n in range(3):
        await graph.ainvoke(Count(n=n), {**config, "metadata": {RUN_ID_KEY: str(uuid.uuid4())}})
    namespaces = rows(database_url, "SELECT DISTINCT checkpoint_ns FROM checkpoints ORDER BY 1")
    newest_call = rows(
        database_url,
        "SELECT checkpoint_ns FROM checkpoints WHERE checkpoint_ns <> '' ORDER BY checkpoint_id DESC LIMIT 1",
    )[0]
    before = await graph.aget_state(config)
    root_runs = runs(database_url, "s")

    report = await compact_thread(persistence.pool, "s", keep_recent_runs=1)

    assert len(namespaces) == 4 and report.checkpoints_deleted == 2 * 3 + 2 * 4
    for table in ("checkpoints", "checkpoint_blobs"):
        kept = rows(database_url, f"SELECT DISTINCT checkpoint_ns FROM {table} ORDER BY 1")
        assert kept == [("",), newest_call], table
    assert runs(database_url, "s") == [root_runs[0][-1:], root_runs[1][-1:], root_runs[2]]
    after = await graph.aget_state(config, subgraphs=True)
    assert (after.values, after.next) == (before.values, before.next)
    assert orphan_writes(database_url, "s") == 0
    assert (await graph.ainvoke(Count(n=5), config))["n"] == 12


async def test_the_api_compacts_every_few_turns_keeping_recent_steps(
    settings: Settings, database_url: str
) -> None:
    tuned = settings.model_copy(update={"compact_every": 2, "step_history_turns": 3})
    async with open_convomem(tuned) as cm:
        for turn in range(12):
            await cm.send("t", f"message number {turn}")
        state = (await cm.state("t")).values
    sizes = [len(run) for run in runs(database_url, "t")]
    assert len(sizes) == 12
    assert sizes[:7] == [1] * 7, sizes  # compacted: only the turn's last checkpoint
    assert all(size > 1 for size in sizes[-3:]), sizes  # the newest turns keep every step
    assert orphan_writes(database_url, "t") == 0
    spent = {channel for _, channel, _ in unbacked_references(database_url, "t")}
    assert spent <= {"__start__"} | {c for c in spent if c.startswith("branch:")}, spent
    assert len(state["messages"]) >= 2


async def test_a_thread_with_a_delta_channel_is_skipped(persistence: Persistence, database_url: str) -> None:
    """A DeltaChannel's value is the chain of its writes: deleting old steps would lose it."""
    from bench.baselines import DeltaMessagesState

    builder = StateGraph(DeltaMessagesState)
    builder.add_node("echo", lambda s: {"messages": [("ai", f"echo {len(s['messages'])}")]})
    builder.add_edge(START, "echo")
    graph = builder.compile(checkpointer=persistence.checkpointer)
    config: RunnableConfig = {"configurable": {"thread_id": "d"}}
    for n in range(3):
        await graph.ainvoke({"messages": [("user", f"m{n}")]}, {**config, "metadata": {RUN_ID_KEY: str(n)}})
    before = checkpoint_ids(database_url, "d")

    report = await compact_thread(persistence.pool, "d", keep_recent_runs=0)

    assert report.skipped == "delta"
    assert checkpoint_ids(database_url, "d") == before
    assert len((await graph.aget_state(config)).values["messages"]) == 6
