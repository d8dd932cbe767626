"""convomem's checkpointer: upstream's AsyncPostgresSaver plus what it lacks.

Upstream (langgraph-checkpoint-postgres 3.2) has put, put_writes, get_tuple, list, delete_thread and a
`prune` that refuses threads using a DeltaChannel. This subclass adds `adelete_for_runs` (LangGraph
Server's rollback), `acopy_thread` (thread copy) and a DeltaChannel-aware `keep_latest` prune, makes
a row that cannot be loaded name its thread and checkpoint, and on a pool drops upstream's saver-wide
asyncio lock; the rest is upstream's, unchanged.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Sequence
from typing import Any, cast

from langchain_core.runnables import RunnableConfig
from langgraph.checkpoint.base import (
    ChannelVersions,
    Checkpoint,
    CheckpointMetadata,
    CheckpointTuple,
    get_checkpoint_id,
)
from langgraph.checkpoint.postgres.aio import AsyncPostgresSaver, Conn
from langgraph.checkpoint.serde.base import SerializerProtocol
from psycopg import AsyncConnection, AsyncCursor, AsyncPipeline
from psycopg.rows import DictRow
from psycopg.types.json import Jsonb
from psycopg_pool import AsyncConnectionPool

from checkpoint.ordering import ThreadOrderLock, saving_thread
from checkpoint.serde import CheckpointDataRefused, SealInlineValues
from nodes.errors import ConfigError, ConvomemError, InvalidInput

__all__ = ["ConvomemSaver", "Cursor", "deleting_sql", "delta_channels", "forget_deleted"]

Cursor = AsyncCursor[DictRow]
CheckpointKey = tuple[str, str, str]  # thread_id, checkpoint_ns, checkpoint_id
BlobKey = tuple[str, str, str, str]  # thread_id, checkpoint_ns, channel, version


def deleting_sql(where: str) -> str:
    """A DELETE of checkpoints that reports each deleted row's parent and (channel, version) pairs, so
    the caller can re-link its children and drop the blobs only it referenced."""
    return f"""
        WITH deleted AS (
            DELETE FROM checkpoints WHERE {where}
            RETURNING thread_id, checkpoint_ns, checkpoint_id, parent_checkpoint_id,
                      checkpoint -> 'channel_versions' AS versions
        )
        SELECT d.thread_id, d.checkpoint_ns, d.checkpoint_id, d.parent_checkpoint_id,
               v.key AS channel, v.value AS version
        FROM deleted d
        LEFT JOIN LATERAL jsonb_each_text(
            CASE WHEN jsonb_typeof(d.versions) = 'object' THEN d.versions ELSE '{{}}'::jsonb END
        ) AS v ON true
    """


# The partial index of migration 0001 serves `metadata ? 'run_id'`.
DELETE_RUNS_SQL = deleting_sql("metadata ? 'run_id' AND metadata ->> 'run_id' = ANY(%s)")
DELETE_UNKEPT_SQL = deleting_sql("thread_id = %s AND checkpoint_ns = %s AND checkpoint_id <> ALL(%s)")

DELETE_WRITES_SQL = """
    DELETE FROM checkpoint_writes w
    USING unnest(%s::text[], %s::text[], %s::text[]) AS d(thread_id, checkpoint_ns, checkpoint_id)
    WHERE w.thread_id = d.thread_id AND w.checkpoint_ns = d.checkpoint_ns
    AND w.checkpoint_id = d.checkpoint_id
"""

RELINK_SQL = """
    UPDATE checkpoints c SET parent_checkpoint_id = m.new_parent
    FROM unnest(%s::text[], %s::text[], %s::text[], %s::text[])
        AS m(thread_id, checkpoint_ns, old_parent, new_parent)
    WHERE c.thread_id = m.thread_id AND c.checkpoint_ns = m.checkpoint_ns
    AND c.parent_checkpoint_id = m.old_parent
"""

REFERENCED_BLOBS_SQL = """
    SELECT DISTINCT c.thread_id, c.checkpoint_ns, v.key AS channel, v.value AS version
    FROM unnest(%s::text[], %s::text[]) AS s(thread_id, checkpoint_ns)
    JOIN checkpoints c ON c.thread_id = s.thread_id AND c.checkpoint_ns = s.checkpoint_ns
    CROSS JOIN LATERAL jsonb_each_text(
        CASE WHEN jsonb_typeof(c.checkpoint -> 'channel_versions') = 'object'
             THEN c.checkpoint -> 'channel_versions' ELSE '{}'::jsonb END
    ) AS v
    WHERE v.key = ANY(%s)
"""

DELETE_BLOBS_SQL = """
    DELETE FROM checkpoint_blobs b
    USING unnest(%s::text[], %s::text[], %s::text[], %s::text[])
        AS g(thread_id, checkpoint_ns, channel, version)
    WHERE b.thread_id = g.thread_id AND b.checkpoint_ns = g.checkpoint_ns
    AND b.channel = g.channel AND b.version = g.version
"""

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

# A DeltaChannel leaves its name in `counters_since_delta_snapshot` until it snapshots, and a snapshot
# is an inline `true` marker with a blob behind it (a plain True never has one).
DELTA_CHANNELS_SQL = """
    SELECT c.thread_id, c.checkpoint_ns, k.channel
    FROM checkpoints c
    CROSS JOIN LATERAL jsonb_object_keys(
        CASE WHEN jsonb_typeof(c.metadata -> 'counters_since_delta_snapshot') = 'object'
             THEN c.metadata -> 'counters_since_delta_snapshot' ELSE '{}'::jsonb END
    ) AS k(channel)
    WHERE c.thread_id = ANY(%(threads)s)
    UNION
    SELECT c.thread_id, c.checkpoint_ns, v.key
    FROM checkpoints c
    CROSS JOIN LATERAL jsonb_each(
        CASE WHEN jsonb_typeof(c.checkpoint -> 'channel_values') = 'object'
             THEN c.checkpoint -> 'channel_values' ELSE '{}'::jsonb END
    ) AS v
    WHERE c.thread_id = ANY(%(threads)s) AND v.value = 'true'::jsonb AND EXISTS (
        SELECT 1 FROM checkpoint_blobs b
        WHERE b.thread_id = c.thread_id AND b.checkpoint_ns = c.checkpoint_ns
        AND b.channel = v.key AND b.version = c.checkpoint -> 'channel_versions' ->> v.key
    )
"""

HEADS_SQL = """
    SELECT DISTINCT ON (checkpoint_ns) checkpoint_ns, checkpoint_id
    FROM checkpoints WHERE thread_id = %s
    ORDER BY checkpoint_ns, checkpoint_id DESC
"""


def _stored(row: str, channel: str) -> str:
    """SQL: checkpoint `row` holds a value for `channel` (inline, or a non-empty blob at its version), the
    test upstream's get_delta_channel_history stops its walk on."""
    return f"""(
        coalesce({row}.checkpoint -> 'channel_values' -> {channel}, 'null'::jsonb) <> 'null'::jsonb
        OR EXISTS (
            SELECT 1 FROM checkpoint_blobs b
            WHERE b.thread_id = {row}.thread_id AND b.checkpoint_ns = {row}.checkpoint_ns
            AND b.channel = {channel} AND b.version = {row}.checkpoint -> 'channel_versions' ->> {channel}
            AND b.type <> 'empty'
        )
    )"""


# From the head back along parent links, while some delta channel still has no stored value: exactly
# the checkpoints whose writes reconstruction replays, ending at the one holding the seed. Ancestors
# have smaller ids (uuid6), which also ends the walk on a corrupted parent cycle.
DELTA_CHAIN_SQL = f"""
    WITH RECURSIVE walk(checkpoint_id, parent_checkpoint_id, pending) AS (
        SELECT c.checkpoint_id, c.parent_checkpoint_id,
               ARRAY(SELECT u.ch FROM unnest(%(channels)s::text[]) AS u(ch)
                     WHERE c.checkpoint -> 'channel_versions' ? u.ch AND NOT {_stored("c", "u.ch")})
        FROM checkpoints c
        WHERE c.thread_id = %(thread)s AND c.checkpoint_ns = %(ns)s AND c.checkpoint_id = %(head)s
      UNION ALL
        SELECT p.checkpoint_id, p.parent_checkpoint_id,
               ARRAY(SELECT u.ch FROM unnest(w.pending) AS u(ch) WHERE NOT {_stored("p", "u.ch")})
        FROM walk w
        JOIN checkpoints p ON p.thread_id = %(thread)s AND p.checkpoint_ns = %(ns)s
            AND p.checkpoint_id = w.parent_checkpoint_id AND p.checkpoint_id < w.checkpoint_id
        WHERE cardinality(w.pending) > 0
    )
    SELECT checkpoint_id FROM walk
"""


# What loading a stored row can raise: the serializer's refusal (CheckpointDataRefused), the cipher's
# wrong key (ConfigError), or a decoder's ValueError / TypeError. Database errors (psycopg.Error) are none
# of these, and an error no stored row reproduces is passed on unchanged.
LOAD_ERRORS = (ConvomemError, ValueError, TypeError)
SUSPECTS_LIMIT = 100

# The checkpoints a failed get or list may have been loading, in upstream's order (newest first), with its
# conditions: thread, namespace and id from the config, metadata filter, `before`; `upto` resumes a list
# after the checkpoints it already returned.
SUSPECTS_SQL = f"""
    SELECT thread_id, checkpoint_ns, checkpoint_id FROM checkpoints
    WHERE (%(thread)s::text IS NULL OR thread_id = %(thread)s)
    AND (%(ns)s::text IS NULL OR checkpoint_ns = %(ns)s)
    AND (%(id)s::text IS NULL OR checkpoint_id = %(id)s)
    AND (%(filter)s::jsonb IS NULL OR metadata @> %(filter)s::jsonb)
    AND (%(before)s::text IS NULL OR checkpoint_id < %(before)s)
    AND (%(upto)s::text IS NULL OR checkpoint_id <= %(upto)s)
    ORDER BY checkpoint_id DESC LIMIT {SUSPECTS_LIMIT}
"""


def _columns(rows: Sequence[tuple[Any, ...]], width: int) -> list[list[Any]]:
    """Rows as per-column lists, the shape `unnest(%s::text[], ...)` takes (one round trip for all)."""
    return [[row[i] for row in rows] for i in range(width)]


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
turns; this form stays at ~0.4 ms)."""


class ConvomemSaver(SealInlineValues, AsyncPostgresSaver):
    """AsyncPostgresSaver, subclassed only to add what upstream lacks (nothing is rewritten but the load
    query's plan, and on a pool the saver-wide lock, which becomes per-thread save ordering)."""

    SELECT_SQL = SELECT_SQL

    def __init__(
        self, conn: Conn, pipe: AsyncPipeline | None = None, serde: SerializerProtocol | None = None
    ) -> None:
        super().__init__(conn, pipe, serde)
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

    async def aget_tuple(self, config: RunnableConfig) -> CheckpointTuple | None:
        """Upstream's get; a stored row it cannot load is reported with its thread and checkpoint ids
        (the serializer alone cannot tell which row it refused)."""
        try:
            return await super().aget_tuple(config)
        except LOAD_ERRORS as error:
            configurable = config["configurable"]
            named = await self._name_unloadable(
                error,
                thread=str(configurable["thread_id"]),
                ns=str(configurable.get("checkpoint_ns", "")),
                checkpoint_id=get_checkpoint_id(config),
            )
            if named is None:
                raise
            raise named from error

    async def alist(
        self,
        config: RunnableConfig | None,
        *,
        filter: dict[str, Any] | None = None,
        before: RunnableConfig | None = None,
        limit: int | None = None,
    ) -> AsyncIterator[CheckpointTuple]:
        """Upstream's list; a stored row it cannot load is reported with its thread and checkpoint ids,
        after the checkpoints listed before it."""
        listed: set[tuple[str, str, str]] = set()
        last: str | None = None
        try:
            async for found in super().alist(config, filter=filter, before=before, limit=limit):
                configurable = found.config["configurable"]
                last = str(configurable["checkpoint_id"])
                listed.add((str(configurable["thread_id"]), str(configurable["checkpoint_ns"]), last))
                yield found
        except LOAD_ERRORS as error:
            configurable = (config or {}).get("configurable", {})
            thread, ns = configurable.get("thread_id"), configurable.get("checkpoint_ns")
            named = await self._name_unloadable(
                error,
                thread=None if not config else str(thread),
                ns=None if ns is None else str(ns),
                checkpoint_id=get_checkpoint_id(config) if config else None,
                filter=filter,
                before=get_checkpoint_id(before) if before else None,
                upto=last,
                listed=listed,
            )
            if named is None:
                raise
            raise named from error

    async def _name_unloadable(
        self,
        error: Exception,
        *,
        thread: str | None,
        ns: str | None,
        checkpoint_id: str | None,
        filter: dict[str, Any] | None = None,
        before: str | None = None,
        upto: str | None = None,
        listed: set[tuple[str, str, str]] | frozenset[tuple[str, str, str]] = frozenset(),
    ) -> ConvomemError | None:
        """`error` said again with the thread and checkpoint of the row behind it: the first checkpoint, in
        the order the failed call read them, that upstream cannot load alone. None when every candidate
        loads (the error came from elsewhere). Runs only after a failure, so costs nothing otherwise."""
        params = {
            "thread": thread,
            "ns": ns,
            "id": checkpoint_id,
            "filter": Jsonb(filter) if filter else None,
            "before": before,
            "upto": upto,
        }
        async with self._cursor() as cur:
            await cur.execute(SUSPECTS_SQL, params)
            suspects = [
                (row["thread_id"], row["checkpoint_ns"], row["checkpoint_id"]) for row in await cur.fetchall()
            ]
        for key in suspects:
            if key in listed:
                continue
            thread_id, checkpoint_ns, suspect_id = key
            target: RunnableConfig = {
                "configurable": {
                    "thread_id": thread_id,
                    "checkpoint_ns": checkpoint_ns,
                    "checkpoint_id": suspect_id,
                }
            }
            try:
                await super().aget_tuple(target)
            except LOAD_ERRORS as refused:
                return _unloadable(refused, thread_id, checkpoint_ns, suspect_id)
        return None

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
        async with self._cursor() as cur, cur.connection.transaction():
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
        async with self._cursor() as cur, cur.connection.transaction():
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
        async with self._cursor() as cur:
            delta = await delta_channels(cur, threads)
        await super().aprune([t for t in threads if t not in delta], strategy=strategy)
        for thread_id in threads:
            if thread_id in delta:
                await self._keep_delta_chains(thread_id)

    async def _keep_delta_chains(self, thread_id: str) -> None:
        """One thread's delta-aware keep_latest, on one snapshot like upstream's (a run appending
        meanwhile is neither seen nor deleted)."""
        async with self._cursor() as cur, cur.connection.transaction():
            await cur.execute("SET TRANSACTION ISOLATION LEVEL REPEATABLE READ")
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


def _unloadable(error: Exception, thread_id: str, ns: str, checkpoint_id: str) -> ConvomemError:
    """The refusal, prefixed with the row's thread and checkpoint; same class when it is ours."""
    where = f"Thread {thread_id!r}" + (f" (namespace {ns!r})" if ns else "") + f", checkpoint {checkpoint_id}"
    if isinstance(error, ConfigError):
        return ConfigError(f"{where}: {error}")
    if isinstance(error, ConvomemError):
        return CheckpointDataRefused(f"{where}: {error}")
    detail = " ".join(str(error).split())[:120]
    return CheckpointDataRefused(
        f"{where}: its stored data cannot be read ({type(error).__name__}: {detail}). Restore the thread "
        "from a backup or delete it."
    )


async def delta_channels(cur: Cursor, threads: list[str]) -> dict[str, dict[str, set[str]]]:
    """thread -> namespace -> its DeltaChannel names, for the threads that have any."""
    if not threads:
        return {}
    await cur.execute(DELTA_CHANNELS_SQL, {"threads": threads})
    found: dict[str, dict[str, set[str]]] = {}
    for row in await cur.fetchall():
        found.setdefault(row["thread_id"], {}).setdefault(row["checkpoint_ns"], set()).add(row["channel"])
    return found


async def forget_deleted(cur: Cursor, rows: Sequence[DictRow]) -> None:
    """After checkpoints are deleted (rows from a `deleting_sql` query): delete their writes, re-link their
    surviving children, and delete the blobs they referenced that no remaining checkpoint does."""
    parents: dict[CheckpointKey, str | None] = {}
    freed: set[BlobKey] = set()
    for row in rows:
        key = (row["thread_id"], row["checkpoint_ns"], row["checkpoint_id"])
        parents[key] = row["parent_checkpoint_id"]
        if row["channel"] is not None:
            freed.add((row["thread_id"], row["checkpoint_ns"], row["channel"], row["version"]))
    if not parents:
        return
    await cur.execute(DELETE_WRITES_SQL, _columns(list(parents), 3))
    relinks = [(*key[:2], key[2], _surviving_ancestor(key, parents)) for key in parents]
    await cur.execute(RELINK_SQL, _columns(relinks, 4))
    if freed:
        scopes = sorted({blob[:2] for blob in freed})
        await cur.execute(REFERENCED_BLOBS_SQL, (*_columns(scopes, 2), sorted({b[2] for b in freed})))
        referenced = {
            (r["thread_id"], r["checkpoint_ns"], r["channel"], r["version"]) for r in await cur.fetchall()
        }
        if garbage := sorted(freed - referenced):
            await cur.execute(DELETE_BLOBS_SQL, _columns(garbage, 4))


def _surviving_ancestor(key: CheckpointKey, deleted: dict[CheckpointKey, str | None]) -> str | None:
    """The nearest ancestor of a deleted checkpoint that was not deleted (None when all were)."""
    thread_id, ns, _ = key
    parent = deleted[key]
    seen = {key}
    while parent is not None and (thread_id, ns, parent) in deleted and (thread_id, ns, parent) not in seen:
        seen.add((thread_id, ns, parent))
        parent = deleted[(thread_id, ns, parent)]
    return None if parent is not None and (thread_id, ns, parent) in seen else parent
