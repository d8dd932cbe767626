"""convomem's checkpointer: upstream's AsyncPostgresSaver plus what it lacks.

Upstream (langgraph-checkpoint-postgres 3.2) has put, put_writes, get_tuple, list, delete_thread and a
`prune` that refuses threads using a DeltaChannel. ConvomemSaver adds `adelete_for_runs` (LangGraph
Server's rollback), `acopy_thread` (thread copy) and a DeltaChannel-aware `keep_latest` prune
(checkpoint/maintenance.py), makes a row that cannot be loaded name its thread and checkpoint
(checkpoint/unloadable.py), seals plain values when encrypting (checkpoint/serde.py), loads with a
faster plan of upstream's query, and on a pool drops upstream's saver-wide asyncio lock; the rest is
upstream's, unchanged.
"""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from typing import Any, cast

from langchain_core.runnables import RunnableConfig
from langgraph.checkpoint.base import ChannelVersions, Checkpoint, CheckpointMetadata
from langgraph.checkpoint.postgres.aio import Conn
from langgraph.checkpoint.serde.base import SerializerProtocol
from psycopg import AsyncConnection, AsyncPipeline
from psycopg.rows import DictRow
from psycopg_pool import AsyncConnectionPool

from checkpoint.connections import Cursor
from checkpoint.deletion import deleting_sql, forget_deleted
from checkpoint.delta import delta_channels
from checkpoint.maintenance import DELETE_RUNS_SQL, CheckpointMaintenance
from checkpoint.ordering import ThreadOrderLock, saving_thread
from checkpoint.serde import SealInlineValues
from checkpoint.unloadable import NameUnloadableRows

__all__ = [
    "DELETE_RUNS_SQL",
    "SELECT_SQL",
    "ConvomemSaver",
    "Cursor",
    "deleting_sql",
    "delta_channels",
    "forget_deleted",
]

SELECT_SQL = """
select
    thread_id,
    checkpoint,
    checkpoint_ns,
    checkpoint_id,
    parent_checkpoint_id,
    metadata,
    (
        select array_agg(array[bl.channel::bytea, bl.type::bytea, bl.blob])
        from jsonb_each_text(checkpoint -> 'channel_versions') v
        cross join lateral (
            select b.channel, b.type, b.blob from checkpoint_blobs b
            where b.thread_id = checkpoints.thread_id
                and b.checkpoint_ns = checkpoints.checkpoint_ns
                and b.channel = v.key
                and b.version = v.value
            limit 1
        ) bl
    ) as channel_values,
    (
        select
        array_agg(array[cw.task_id::text::bytea, cw.channel::bytea, cw.type::bytea, cw.blob, convert_to(cw.task_path, 'UTF8'), cw.idx::text::bytea])
        from checkpoint_writes cw
        where cw.thread_id = checkpoints.thread_id
            and cw.checkpoint_ns = checkpoints.checkpoint_ns
            and cw.checkpoint_id = checkpoints.checkpoint_id
    ) as pending_writes
from checkpoints """  # noqa: E501 (upstream's text, kept comparable line by line)
"""Upstream's SELECT_SQL with one change: each stored value is looked up per channel (`lateral ... limit
1` makes the planner use the blobs' primary key). Upstream's join scans every stored value of the
thread, so loading the latest checkpoint got slower as the thread grew (bench/: 0.9 -> 2.4 ms over 1000
turns; this form stays at ~0.4 ms).

Upstream detail: a copy of `BasePostgresSaver.SELECT_SQL` (langgraph.checkpoint.postgres.base), which
aget_tuple and alist read from the class; pinned by
tests/unit/test_upstream_pins.py::test_select_sql_is_upstreams_but_for_the_per_channel_blob_lookup,
tests/unit/test_upstream_pins.py::test_get_and_list_read_the_class_select_sql and
tests/integration/test_upstream_pins.py::test_select_sql_loads_the_rows_upstreams_loads."""


class ConvomemSaver(SealInlineValues, NameUnloadableRows, CheckpointMaintenance):
    """AsyncPostgresSaver, subclassed only to add what upstream lacks (nothing is rewritten but the load
    query's plan, and on a pool the saver-wide lock, which becomes per-thread save ordering)."""

    SELECT_SQL = SELECT_SQL

    def __init__(
        self, conn: Conn, pipe: AsyncPipeline | None = None, serde: SerializerProtocol | None = None
    ) -> None:
        super().__init__(conn, pipe, serde)
        # Upstream detail: AsyncPostgresSaver's `lock` (an asyncio.Lock made in __init__, used only as
        # `async with self.lock` in the private `_cursor()`, in the task that saves) is swapped for
        # per-thread ordering; pinned by
        # tests/unit/test_upstream_pins.py::test_saver_lock_is_an_asyncio_lock_only_entered_by_cursor and
        # tests/integration/test_upstream_pins.py::test_saves_enter_the_saver_lock_in_the_saving_task.
        if isinstance(conn, AsyncConnectionPool):  # one connection (bound_to) keeps upstream's lock
            self.lock = cast(asyncio.Lock, ThreadOrderLock())

    async def aput(
        self,
        config: RunnableConfig,
        checkpoint: Checkpoint,
        metadata: CheckpointMetadata,
        new_versions: ChannelVersions,
    ) -> RunnableConfig:
        with saving_thread(str(config["configurable"]["thread_id"])):
            return await super().aput(config, checkpoint, metadata, new_versions)

    async def aput_writes(
        self, config: RunnableConfig, writes: Sequence[tuple[str, Any]], task_id: str, task_path: str = ""
    ) -> None:
        with saving_thread(str(config["configurable"]["thread_id"])):
            await super().aput_writes(config, writes, task_id, task_path)

    def bound_to(self, conn: AsyncConnection[DictRow]) -> ConvomemSaver:
        """This saver on one connection: its operations then join that connection's open transaction
        (as savepoints), which is how retention measures a prune and rolls it back for a dry run."""
        return type(self)(conn, serde=self.serde)
