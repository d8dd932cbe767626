"""Threads that use a DeltaChannel: which channels they have, and the checkpoints rebuilding one replays."""

from __future__ import annotations

from checkpoint.connections import Cursor

__all__ = ["DELTA_CHAIN_SQL", "delta_channels"]

# A DeltaChannel leaves its name in `counters_since_delta_snapshot` until it snapshots, and a snapshot
# is an inline `true` marker with a blob behind it (a plain True never has one). Upstream detail: the
# same tests as upstream's private PRUNE_DELTA_THREADS_SQL (langgraph.checkpoint.postgres.base), and the
# marker AsyncPostgresSaver.aput writes for a private `_DeltaSnapshot`; pinned by
# tests/unit/test_upstream_pins.py::test_delta_threads_are_told_apart_as_upstreams_prune_does and
# tests/integration/test_upstream_pins.py::test_aput_inlines_plain_values_and_marks_delta_snapshots.
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


def _stored(row: str, channel: str) -> str:
    """SQL: checkpoint `row` holds a value for `channel` (inline, or a non-empty blob at its version), the
    test upstream's get_delta_channel_history stops its walk on.

    Upstream detail: the seed test of the private `_build_delta_stage1_sql`
    (langgraph.checkpoint.postgres.base); pinned by
    tests/unit/test_upstream_pins.py::test_a_stored_value_ends_the_delta_walk_as_upstreams_does.
    """
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


async def delta_channels(cur: Cursor, threads: list[str]) -> dict[str, dict[str, set[str]]]:
    """thread -> namespace -> its DeltaChannel names, for the threads that have any."""
    if not threads:
        return {}
    await cur.execute(DELTA_CHANNELS_SQL, {"threads": threads})
    found: dict[str, dict[str, set[str]]] = {}
    for row in await cur.fetchall():
        found.setdefault(row["thread_id"], {}).setdefault(row["checkpoint_ns"], set()).add(row["channel"])
    return found
