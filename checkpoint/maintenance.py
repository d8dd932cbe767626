"""Maintenance upstream's saver lacks: delete runs, copy a thread, prune threads that use a DeltaChannel."""

from __future__ import annotations

from collections.abc import Sequence

from langgraph.checkpoint.postgres.aio import AsyncPostgresSaver
from psycopg.rows import DictRow

from checkpoint.deletion import deleting_sql, forget_deleted
from checkpoint.delta import DELTA_CHAIN_SQL, delta_channels
from nodes.errors import InvalidInput

__all__ = ["DELETE_RUNS_SQL", "CheckpointMaintenance"]

# The partial index of migration 0001 serves `metadata ? 'run_id'`.
DELETE_RUNS_SQL = deleting_sql("metadata ? 'run_id' AND metadata ->> 'run_id' = ANY(%s)")
DELETE_UNKEPT_SQL = deleting_sql("thread_id = %s AND checkpoint_ns = %s AND checkpoint_id <> ALL(%s)")

THREAD_IN_USE_SQL = """
    SELECT EXISTS (SELECT 1 FROM checkpoints WHERE thread_id = %(t)s)
        OR EXISTS (SELECT 1 FROM checkpoint_writes WHERE thread_id = %(t)s)
        OR EXISTS (SELECT 1 FROM checkpoint_blobs WHERE thread_id = %(t)s) AS in_use
"""

COPY_THREAD_SQL = (
    """INSERT INTO checkpoints
           (thread_id, checkpoint_ns, checkpoint_id, parent_checkpoint_id, type, checkpoint, metadata)
       SELECT %(target)s, checkpoint_ns, checkpoint_id, parent_checkpoint_id, type, checkpoint, metadata
       FROM checkpoints WHERE thread_id = %(source)s""",
    """INSERT INTO checkpoint_blobs (thread_id, checkpoint_ns, channel, version, type, blob)
       SELECT %(target)s, checkpoint_ns, channel, version, type, blob
       FROM checkpoint_blobs WHERE thread_id = %(source)s""",
    """INSERT INTO checkpoint_writes
           (thread_id, checkpoint_ns, checkpoint_id, task_id, task_path, idx, channel, type, blob)
       SELECT %(target)s, checkpoint_ns, checkpoint_id, task_id, task_path, idx, channel, type, blob
       FROM checkpoint_writes WHERE thread_id = %(source)s""",
)

HEADS_SQL = """
    SELECT DISTINCT ON (checkpoint_ns) checkpoint_ns, checkpoint_id
    FROM checkpoints WHERE thread_id = %s
    ORDER BY checkpoint_ns, checkpoint_id DESC
"""

# Upstream details every method here relies on: the private `self._cursor()` (a dict-row cursor on a
# pooled connection, or on the one a `bound_to` saver holds, so `cur.connection.transaction()` is a
# transaction or a savepoint of the caller's), pinned by
# tests/unit/test_upstream_pins.py::test_cursor_takes_only_the_pipeline_keyword and
# tests/integration/test_upstream_pins.py::test_cursor_gives_dict_rows_on_the_bound_connection; and
# the REPEATABLE READ snapshot upstream's keep_latest opens (the level `_keep_delta_chains` copies and
# retention sets first), pinned by
# tests/unit/test_upstream_pins.py::test_keep_latest_reads_one_repeatable_read_snapshot.


class CheckpointMaintenance(AsyncPostgresSaver):
    """Saver mixin: run deletion (LangGraph Server's rollback), thread copy, DeltaChannel-aware prune."""

    async def adelete_for_runs(self, run_ids: Sequence[str]) -> None:
        """Delete the checkpoints whose metadata `run_id` is listed, their writes, and the blobs no
        remaining checkpoint references; all at once or not at all.

        A surviving checkpoint whose parent is deleted is re-linked to its nearest surviving ancestor, so
        history stays walkable. Writes a deleted run left on an older, surviving checkpoint (its first
        step's, a resume answer) carry no run id and stay: graphs.api undoes those itself. Copied threads
        keep their source's run ids, so deleting a run deletes it from the copies too. Call it once the
        runs have stopped (LangGraph Server cancels first; convomem holds the thread lock): a blob a
        still-running run is about to reference could otherwise be taken for garbage.
        """
        if isinstance(run_ids, str):
            raise TypeError("run_ids must be a sequence of run IDs, not a str")
        runs = [str(run) for run in run_ids]
        if not runs:
            return
        async with self._cursor() as cur, cur.connection.transaction():  # private _cursor: see above
            await cur.execute(DELETE_RUNS_SQL, (runs,))
            await forget_deleted(cur, await cur.fetchall())

    async def acopy_thread(self, source_thread_id: str, target_thread_id: str) -> None:
        """Copy every checkpoint, write and blob of a thread (all namespaces) to a new thread id.

        Ids, parents and metadata are kept as they are, so the copy lists and replays exactly like the
        source. The target must be unused: merging two histories under one id would fork it silently.
        """
        source, target = str(source_thread_id), str(target_thread_id)
        if source == target:
            raise InvalidInput(f"Cannot copy thread {source!r} onto itself: give a new thread id.")
        params = {"source": source, "target": target}
        async with self._cursor() as cur, cur.connection.transaction():  # private _cursor: see above
            await cur.execute(THREAD_IN_USE_SQL, {"t": target})
            row = await cur.fetchone()
            if row and row["in_use"]:
                raise InvalidInput(f"Thread {target!r} already has checkpoints: copy into a new thread id.")
            for sql in COPY_THREAD_SQL:
                await cur.execute(sql, params)

    async def aprune(self, thread_ids: Sequence[str], *, strategy: str = "keep_latest") -> None:
        """Upstream's prune, plus `keep_latest` for threads that use a DeltaChannel (upstream refuses them).

        `"delete"` removes every checkpoint, write and blob of the threads. `"keep_latest"` keeps the
        latest checkpoint of each namespace with its writes and every blob it references. For a thread
        with DeltaChannels it also keeps, per namespace, the parent chain from that checkpoint back to the
        one holding a stored value (snapshot) for every delta channel, with their writes: exactly what
        reconstruction replays. That chain's oldest checkpoint loses its deleted parent; namespaces of
        such threads are each pruned alike (subgraph-call namespaces are kept, not deleted).
        """
        if strategy != "keep_latest" or isinstance(thread_ids, str):
            await super().aprune(thread_ids, strategy=strategy)
            return
        threads = [str(thread) for thread in thread_ids]
        async with self._cursor() as cur:  # private _cursor: see above
            delta = await delta_channels(cur, threads)
        await super().aprune([t for t in threads if t not in delta], strategy=strategy)
        for thread_id in threads:
            if thread_id in delta:
                await self._keep_delta_chains(thread_id)

    async def _keep_delta_chains(self, thread_id: str) -> None:
        """One thread's delta-aware keep_latest, on one snapshot like upstream's (a run appending
        meanwhile is neither seen nor deleted)."""
        async with self._cursor() as cur, cur.connection.transaction():  # private _cursor: see above
            await cur.execute("SET TRANSACTION ISOLATION LEVEL REPEATABLE READ")  # upstream's level: above
            channels = (await delta_channels(cur, [thread_id])).get(thread_id, {})
            await cur.execute(HEADS_SQL, (thread_id,))
            deleted: list[DictRow] = []
            for head in await cur.fetchall():
                ns = head["checkpoint_ns"]
                await cur.execute(
                    DELTA_CHAIN_SQL,
                    {
                        "thread": thread_id,
                        "ns": ns,
                        "head": head["checkpoint_id"],
                        "channels": sorted(channels.get(ns, ())),
                    },
                )
                kept = [row["checkpoint_id"] for row in await cur.fetchall()]
                await cur.execute(DELETE_UNKEPT_SQL, (thread_id, ns, kept))
                deleted.extend(await cur.fetchall())
            await forget_deleted(cur, deleted)
