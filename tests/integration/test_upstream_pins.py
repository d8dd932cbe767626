"""Private upstream details convomem relies on, pinned on the real Postgres: each test fails when the
installed langgraph / langgraph-checkpoint-postgres changes the behaviour it names.

The text-only pins (query copies, signatures) are in tests/unit/test_upstream_pins.py.
"""

from __future__ import annotations

import asyncio
from types import TracebackType
from typing import Any

import pytest
from langchain_core.messages import AIMessage, HumanMessage
from langchain_core.runnables import RunnableConfig
from langgraph.checkpoint.base import Checkpoint, empty_checkpoint
from langgraph.checkpoint.postgres.aio import AsyncPostgresSaver
from langgraph.checkpoint.postgres.base import BasePostgresSaver
from langgraph.checkpoint.serde.types import _DeltaSnapshot
from langgraph.store.base import GetOp, Item, PutOp, SearchOp
from psycopg import Rollback, errors

from checkpoint.delta import delta_channels
from checkpoint.ordering import _SAVING, ThreadOrderLock
from checkpoint.persistence import Persistence, _stop_batch_task
from checkpoint.saver import SELECT_SQL, ConvomemSaver

THREAD: RunnableConfig = {"configurable": {"thread_id": "t", "checkpoint_ns": ""}}


def checkpoint_of(values: dict[str, Any], version: str = "1") -> Checkpoint:
    checkpoint = empty_checkpoint()
    checkpoint["channel_values"] = values
    checkpoint["channel_versions"] = dict.fromkeys(values, version)
    return checkpoint


# --------------------------------------------------------------------------- the saver-wide lock


class RecordingLock(ThreadOrderLock):
    """ThreadOrderLock that notes, each time upstream enters it, the saving thread and the task."""

    def __init__(self) -> None:
        super().__init__()
        self.entered: list[tuple[str | None, asyncio.Task[Any] | None]] = []

    async def __aenter__(self) -> None:
        self.entered.append((_SAVING.get(), asyncio.current_task()))
        await super().__aenter__()

    async def __aexit__(
        self, kind: type[BaseException] | None, error: BaseException | None, trace: TracebackType | None
    ) -> None:
        await super().__aexit__(kind, error, trace)


async def test_saves_enter_the_saver_lock_in_the_saving_task(persistence: Persistence) -> None:
    """checkpoint/saver.py swaps upstream's `lock` on a pool; checkpoint/ordering.py orders a save when
    upstream enters that lock once per save, in the task that called aput / aput_writes (so the thread
    marked by `saving_thread` is visible), and a read enters it unmarked."""
    upstream = AsyncPostgresSaver(persistence.pool)
    assert type(upstream.lock) is asyncio.Lock
    saver = ConvomemSaver(persistence.pool, serde=persistence.checkpointer.serde)
    assert isinstance(saver.lock, ThreadOrderLock)
    recorder = RecordingLock()
    saver.lock = recorder  # type: ignore[assignment]

    saved = await saver.aput(THREAD, checkpoint_of({"messages": [HumanMessage("hi", id="1")]}), {}, {})
    await saver.aput_writes(saved, [("messages", [AIMessage("yo", id="2")])], "task-1")
    loaded = await saver.aget_tuple(saved)

    assert loaded is not None and loaded.pending_writes
    here = asyncio.current_task()
    assert recorder.entered == [("t", here), ("t", here), (None, here)]


async def test_a_saver_bound_to_one_connection_keeps_upstreams_lock(persistence: Persistence) -> None:
    async with persistence.pool.connection() as conn:
        assert type(persistence.checkpointer.bound_to(conn).lock) is asyncio.Lock


# --------------------------------------------------------------------------- _cursor()


async def test_cursor_gives_dict_rows_on_the_bound_connection(persistence: Persistence) -> None:
    """checkpoint/maintenance.py and checkpoint/unloadable.py read rows by column name from the private
    `_cursor()`, and run `cur.connection.transaction()`; retention's dry run relies on a saver bound to
    one connection using that very connection, so the prune is a savepoint of the caller's transaction."""
    async with persistence.checkpointer._cursor() as cur:
        await cur.execute("SELECT 1 AS one")
        assert await cur.fetchone() == {"one": 1}

    async with persistence.pool.connection() as conn:
        async with conn.transaction() as outer:
            async with persistence.checkpointer.bound_to(conn)._cursor() as cur:
                assert cur.connection is conn
                async with cur.connection.transaction():
                    await cur.execute("CREATE TABLE pin_probe (x int)")
            raise Rollback(outer)
        with pytest.raises(errors.UndefinedTable):
            await conn.execute("SELECT * FROM pin_probe")


# --------------------------------------------------------------------------- the load query


async def test_select_sql_loads_the_rows_upstreams_loads(persistence: Persistence) -> None:
    """checkpoint/saver.py SELECT_SQL returns, for every checkpoint, what upstream's query returns (blobs
    shared between checkpoints, a value written inline, pending writes)."""
    saver = persistence.checkpointer
    hello = [HumanMessage("hi", id="1")]
    first = await saver.aput(THREAD, checkpoint_of({"messages": hello, "text": "s"}), {}, {"messages": "1"})
    await saver.aput_writes(first, [("messages", [AIMessage("yo", id="2")])], "task-1")
    second = checkpoint_of({"messages": hello, "other": {"k": 1}})
    second["channel_versions"]["other"] = "2"
    await saver.aput(first, second, {}, {"other": "2"})

    def normal(rows: list[Any]) -> list[dict[str, Any]]:
        return [{**row, "channel_values": sorted(row["channel_values"] or [])} for row in rows]

    where = "WHERE thread_id = %s ORDER BY checkpoint_id"
    async with saver._cursor() as cur:
        await cur.execute(BasePostgresSaver.SELECT_SQL + where, ("t",), binary=True)
        upstream = normal(await cur.fetchall())
        await cur.execute(SELECT_SQL + where, ("t",), binary=True)
        ours = normal(await cur.fetchall())
    assert len(ours) == 2 and ours[0]["pending_writes"] and len(ours[1]["channel_values"]) == 2
    assert ours == upstream


# --------------------------------------------------------------------------- what aput stores where


async def test_aput_inlines_plain_values_and_marks_delta_snapshots(persistence: Persistence) -> None:
    """Upstream's aput keeps None, str, int, float and bool in the checkpoint's JSON column and sends
    every other value (checkpoint/serde.py's sealed values among them) to a blob, only for channels in
    `new_versions`; a private `_DeltaSnapshot` becomes an inline `true` with a blob behind it, which
    checkpoint/delta.py tells apart from a plain True."""
    upstream = AsyncPostgresSaver(persistence.pool)
    values = {
        "text": "x",
        "number": 1,
        "real": 1.5,
        "flag": True,
        "nothing": None,
        "object": {"k": 1},
        "delta": _DeltaSnapshot(["m"]),
        "unversioned": {"k": 2},
    }
    checkpoint = checkpoint_of(values)
    new_versions = {name: "1" for name in values if name != "unversioned"}
    counted = {"counters_since_delta_snapshot": {"counted": (1, 1)}}
    await upstream.aput(THREAD, checkpoint, counted, new_versions)

    async with upstream._cursor() as cur:
        await cur.execute("SELECT checkpoint -> 'channel_values' AS inline FROM checkpoints")
        rows = await cur.fetchall()
        await cur.execute("SELECT channel FROM checkpoint_blobs ORDER BY channel")
        blobs = [row["channel"] for row in await cur.fetchall()]
        found = await delta_channels(cur, ["t"])
    assert [row["inline"] for row in rows] == [
        {"text": "x", "number": 1, "real": 1.5, "flag": True, "nothing": None, "delta": True}
    ]
    assert blobs == ["delta", "object"]
    assert found == {"t": {"": {"delta", "counted"}}}


# --------------------------------------------------------------------------- the store's batch task


async def test_stopping_the_store_task_ends_it(persistence: Persistence) -> None:
    """checkpoint/persistence.py `_stop_batch_task` ends `store._task`, the private task upstream's
    AsyncPostgresStore starts when made and runs every batched operation on."""
    store = persistence.store
    task = getattr(store, "_task", None)
    assert isinstance(task, asyncio.Task) and not task.done()
    await store.aput(("pin",), "k", {"v": 1})
    assert store._task is task and (await store.aget(("pin",), "k")) is not None

    await _stop_batch_task(store)

    assert task.done() and task.cancelled()


# --------------------------------------------------------------------------- one store batch, one transaction


async def test_one_store_batch_is_one_checkout_reads_before_writes_all_or_nothing(
    persistence: Persistence,
) -> None:
    """nodes/memory_batch.py counts one round trip and one transaction per `abatch`: AsyncPostgresStore
    runs a batch on one pooled connection in one pipeline (one implicit transaction up to its Sync),
    its gets and searches before its puts whatever their order, so a node's writes land together."""
    store, pool = persistence.store, persistence.pool
    namespace = ("pins", "batch")
    await store.abatch([PutOp(namespace, "old", {"v": 1}), PutOp(namespace, "other", {"v": 1})])
    checkouts = pool.get_stats()["requests_num"]
    _, read, searched = await store.abatch(
        [PutOp(namespace, "old", {"v": 2}), GetOp(namespace, "old"), SearchOp(namespace, limit=5)]
    )
    assert pool.get_stats()["requests_num"] - checkouts == 1, "one connection for the whole batch"
    assert isinstance(read, Item) and read.value == {"v": 1}, "the get ran before the put"
    assert isinstance(searched, list) and {item.key for item in searched} == {"old", "other"}
    with pytest.raises(errors.UntranslatableCharacter):  # jsonb refuses \u0000: the INSERT fails
        await store.abatch([PutOp(namespace, "other", None), PutOp(namespace, "bad", {"v": "\u0000"})])
    assert await store.aget(namespace, "other") is not None, "the batch's DELETE rolled back with it"
