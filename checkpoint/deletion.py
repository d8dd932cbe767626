"""Deleting checkpoints without leaving dangling parent links or blobs nothing references any more.

Shared by the saver's run deletion and delta-aware prune (checkpoint/maintenance.py) and by compaction.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from psycopg.rows import DictRow

from checkpoint.connections import Cursor

__all__ = ["deleting_sql", "forget_deleted"]

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


def _columns(rows: Sequence[tuple[Any, ...]], width: int) -> list[list[Any]]:
    """Rows as per-column lists, the shape `unnest(%s::text[], ...)` takes (one round trip for all)."""
    return [[row[i] for row in rows] for i in range(width)]


def _surviving_ancestor(key: CheckpointKey, deleted: dict[CheckpointKey, str | None]) -> str | None:
    """The nearest ancestor of a deleted checkpoint that was not deleted (None when all were)."""
    thread_id, ns, _ = key
    parent = deleted[key]
    seen = {key}
    while parent is not None and (thread_id, ns, parent) in deleted and (thread_id, ns, parent) not in seen:
        seen.add((thread_id, ns, parent))
        parent = deleted[(thread_id, ns, parent)]
    return None if parent is not None and (thread_id, ns, parent) in seen else parent
