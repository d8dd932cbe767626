"""Compaction: drop the step checkpoints of a thread's older turns, keeping each turn's last one."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

from langgraph.checkpoint.serde.types import INTERRUPT
from psycopg.rows import DictRow, dict_row
from psycopg_pool import AsyncConnectionPool

from checkpoint.connections import Conn, Cursor, Pool
from checkpoint.deletion import deleting_sql, forget_deleted
from checkpoint.delta import delta_channels
from checkpoint.ids import validate_id
from checkpoint.locks import RUN_ID_KEY, try_thread_lock_in_transaction
from nodes.errors import InvalidInput

__all__ = ["DEFAULT_KEEP_RECENT_RUNS", "CompactionReport", "compact_thread"]

DEFAULT_KEEP_RECENT_RUNS = 20

# Checkpoints a compaction deletes: those of runs older than the `keep` most recent (ranked thread-wide
# by their newest checkpoint), holding no interrupt, that are either a middle step (not their run's last
# checkpoint in their namespace, the turn boundary; a namespace's head is always its run's last) or
# belong to a subgraph call whose root checkpoint (metadata `parents['']`, the root step that scheduled
# the call) goes too or is gone: such a namespace is reachable only through that root step. A checkpoint
# without run id is never a candidate. Ids are uuid6, so "C" text order is time order. One read of the
# thread's checkpoints by index (metadata is small and inline), plus a primary-key probe for interrupt
# writes per candidate only; nothing is locked or written.
SUPERSEDED_SQL = f"""
    WITH thread AS (
        SELECT checkpoint_ns, checkpoint_id, metadata ->> '{RUN_ID_KEY}' AS run_id,
               metadata -> 'parents' ->> '' AS root
        FROM checkpoints WHERE thread_id = %(thread)s
    ),
    runs AS (
        SELECT run_id, row_number() OVER (ORDER BY max(checkpoint_id COLLATE "C") DESC) AS recency
        FROM thread WHERE run_id IS NOT NULL GROUP BY run_id
    ),
    old AS (
        SELECT t.checkpoint_ns, t.checkpoint_id, t.root,
               row_number() OVER (
                   PARTITION BY t.checkpoint_ns, t.run_id ORDER BY t.checkpoint_id COLLATE "C" DESC
               ) > 1 AS middle
        FROM thread t JOIN runs r USING (run_id)
        WHERE r.recency > %(keep)s
    ),
    superseded AS (
        SELECT o.checkpoint_ns, o.checkpoint_id, o.root, o.middle FROM old o
        WHERE (o.middle OR o.checkpoint_ns <> '') AND NOT EXISTS (
            SELECT 1 FROM checkpoint_writes w
            WHERE w.thread_id = %(thread)s AND w.checkpoint_ns = o.checkpoint_ns
            AND w.checkpoint_id = o.checkpoint_id AND w.channel = %(interrupt)s
        )
    )
    SELECT o.checkpoint_ns, o.checkpoint_id FROM superseded o
    WHERE o.middle OR (o.checkpoint_ns <> '' AND o.root IS NOT NULL AND (
        EXISTS (
            SELECT 1 FROM superseded r WHERE r.checkpoint_ns = '' AND r.checkpoint_id = o.root AND r.middle
        )
        OR NOT EXISTS (SELECT 1 FROM thread r WHERE r.checkpoint_ns = '' AND r.checkpoint_id = o.root)
    ))
    ORDER BY o.checkpoint_ns, o.checkpoint_id
"""

DELETE_LISTED_SQL = deleting_sql(
    "thread_id = %s AND (checkpoint_ns, checkpoint_id) IN (SELECT * FROM unnest(%s::text[], %s::text[]))"
)

# Column sizes, not whole rows: pg_column_size of a row value would fetch every TOASTed value first.
FOOTPRINT_SQL = """
    SELECT
        (SELECT count(*) FROM checkpoints WHERE thread_id = %(thread)s) AS checkpoints,
        (SELECT count(*) FROM checkpoint_writes WHERE thread_id = %(thread)s) AS writes,
        (SELECT count(*) FROM checkpoint_blobs WHERE thread_id = %(thread)s) AS blobs,
        (SELECT coalesce(sum(pg_column_size(checkpoint) + coalesce(pg_column_size(metadata), 0)), 0)
         FROM checkpoints WHERE thread_id = %(thread)s)
        + (SELECT coalesce(sum(coalesce(pg_column_size(blob), 0)), 0)
           FROM checkpoint_writes WHERE thread_id = %(thread)s)
        + (SELECT coalesce(sum(coalesce(pg_column_size(blob), 0)), 0)
           FROM checkpoint_blobs WHERE thread_id = %(thread)s) AS bytes
"""


@dataclass(frozen=True)
class CompactionReport:
    """What one compaction removed; `skipped` says why it did nothing at all."""

    thread_id: str
    checkpoints_deleted: int = 0
    writes_deleted: int = 0
    blobs_deleted: int = 0
    bytes_freed: int = 0
    """Approximate: the stored (compressed) sizes of the checkpoint, write and blob values removed."""
    skipped: Literal["busy", "delta"] | None = None

    def __str__(self) -> str:
        if self.skipped:
            return f"skipped: {self.skipped}"
        return (
            f"deleted {self.checkpoints_deleted} checkpoints, {self.writes_deleted} writes, "
            f"{self.blobs_deleted} blobs (~{self.bytes_freed} bytes)"
        )


async def compact_thread(
    conn_or_pool: Conn | Pool,
    thread_id: str,
    *,
    keep_recent_runs: int = DEFAULT_KEEP_RECENT_RUNS,
    lock: bool = True,
    measure: bool = True,
) -> CompactionReport:
    """Delete the intermediate (step) checkpoints of the thread's runs older than the `keep_recent_runs`
    most recent, in every namespace, with their writes and the blobs only they referenced.

    Each older run keeps its last checkpoint, the turn boundary, so state, history, replay and fork from
    any turn keep working; the messages themselves live in the transcript. The newest checkpoint of each
    namespace, checkpoints without a run id and checkpoints holding an interrupt are always kept. A kept
    checkpoint whose parent is deleted is re-linked to its nearest kept ancestor (the previous turn
    boundary), as the saver's run deletion does, so parent links never dangle.

    One transaction. With `lock` it first takes the thread's run lock and reports `skipped="busy"` when a
    run holds it; pass `lock=False` only when the caller holds that lock itself (the API after a turn).
    On a connection already inside a transaction it runs as a savepoint, and the lock lasts until that
    outer transaction ends. With nothing to delete it costs one indexed read of the thread's checkpoints.
    A thread with a DeltaChannel is skipped (`skipped="delta"`): its older writes are its values.
    `measure=False` skips sizing the thread before and after (the report then counts checkpoints only).
    """
    validate_id(thread_id)
    if keep_recent_runs < 0:
        raise InvalidInput(f"keep_recent_runs must be 0 or more, not {keep_recent_runs}.")
    if isinstance(conn_or_pool, AsyncConnectionPool):
        async with conn_or_pool.connection() as conn:
            return await _compact(conn, thread_id, keep_recent_runs, lock, measure)
    return await _compact(conn_or_pool, thread_id, keep_recent_runs, lock, measure)


async def _compact(conn: Conn, thread_id: str, keep: int, lock: bool, measure: bool) -> CompactionReport:
    async with conn.transaction(), conn.cursor(row_factory=dict_row) as cur:
        if lock and not await try_thread_lock_in_transaction(conn, thread_id):
            return CompactionReport(thread_id, skipped="busy")
        await cur.execute(SUPERSEDED_SQL, {"thread": thread_id, "keep": keep, "interrupt": INTERRUPT})
        superseded = await cur.fetchall()
        if not superseded:
            return CompactionReport(thread_id)
        if await delta_channels(cur, [thread_id]):
            return CompactionReport(thread_id, skipped="delta")
        before = await _footprint(cur, thread_id) if measure else None
        namespaces = [row["checkpoint_ns"] for row in superseded]
        ids = [row["checkpoint_id"] for row in superseded]
        await cur.execute(DELETE_LISTED_SQL, (thread_id, namespaces, ids))
        deleted = await cur.fetchall()
        await forget_deleted(cur, deleted)
        if before is None:
            return CompactionReport(thread_id, checkpoints_deleted=len(deleted))
        after = await _footprint(cur, thread_id)
    return CompactionReport(
        thread_id,
        checkpoints_deleted=before["checkpoints"] - after["checkpoints"],
        writes_deleted=before["writes"] - after["writes"],
        blobs_deleted=before["blobs"] - after["blobs"],
        bytes_freed=max(int(before["bytes"]) - int(after["bytes"]), 0),
    )


async def _footprint(cur: Cursor, thread_id: str) -> DictRow:
    """Row counts of the thread in the three checkpoint tables, and the stored size of their values."""
    await cur.execute(FOOTPRINT_SQL, {"thread": thread_id})
    row = await cur.fetchone()
    assert row is not None  # an aggregate query always returns its one row
    return row
