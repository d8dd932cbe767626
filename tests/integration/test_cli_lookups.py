"""What the scriptable CLI relies on, on the real Postgres: checkpoint prefixes, thread existence, exact
table counts, forgetting a junk entity, and the one-line reasons a connection is refused."""

from __future__ import annotations

import pytest
from psycopg.conninfo import conninfo_to_dict, make_conninfo

from checkpoint.persistence import Persistence
from checkpoint.pool import open_pool
from checkpoint.status import database_status
from checkpoint.threads import require_thread, resolve_checkpoint, thread_exists
from nodes.entity_lookup import find_entity, forget_entity
from nodes.errors import ConfigError, DatabaseUnavailable, UnknownCheckpoint, UnknownThread
from nodes.memory import EntityRecord
from nodes.namespaces import entity_namespace

IDS = (
    "1f0aa000-0000-6000-8000-000000000001",
    "1f0aa000-0000-6000-8000-000000000002",
    "1f0bb000-0000-6000-8000-000000000003",
)


async def add_checkpoints(persistence: Persistence, thread_id: str, ids: tuple[str, ...]) -> None:
    async with persistence.pool.connection() as conn:
        for checkpoint_id in ids:
            await conn.execute(
                "INSERT INTO checkpoints (thread_id, checkpoint_ns, checkpoint_id, checkpoint, metadata) "
                "VALUES (%s, '', %s, '{}', '{}')",
                (thread_id, checkpoint_id),
            )


async def test_a_unique_prefix_resolves_to_the_full_id(persistence: Persistence) -> None:
    await add_checkpoints(persistence, "t", IDS)
    await add_checkpoints(persistence, "other", ("1f0cc000-0000-6000-8000-000000000009",))
    pool = persistence.pool

    assert await resolve_checkpoint(pool, "t", "1f0bb") == IDS[2]
    assert await resolve_checkpoint(pool, "t", IDS[0]) == IDS[0], "a whole id is its own prefix"
    assert await resolve_checkpoint(pool, "t", " 1f0aa000-0000-6000-8000-000000000002 ") == IDS[1]

    with pytest.raises(UnknownCheckpoint, match="several") as ambiguous:
        await resolve_checkpoint(pool, "t", "1f0aa")
    assert "\n" not in str(ambiguous.value)
    for unknown in ("1f0cc", "zz", "%", "_f0bb", "1f0a%", "\\"):  # another thread's, none, wildcards
        with pytest.raises(UnknownCheckpoint, match="No checkpoint"):
            await resolve_checkpoint(pool, "t", unknown)
    with pytest.raises(UnknownCheckpoint):
        await resolve_checkpoint(pool, "t", "  ")
    with pytest.raises(UnknownThread, match="convomem threads"):
        await resolve_checkpoint(pool, "never-used", "1f0")


async def test_a_thread_exists_with_a_checkpoint_or_archived_messages(persistence: Persistence) -> None:
    await add_checkpoints(persistence, "t", IDS[:1])
    async with persistence.pool.connection() as conn:
        await conn.execute(
            "INSERT INTO convomem_transcript (thread_id, message_id, user_id, role, content, message, "
            "tokens, language, tsv) VALUES ('pruned', 'm1', 'u', 'human', 'hi', '{}', 1, 'simple', "
            "to_tsvector('simple', 'hi'))"
        )
    assert await thread_exists(persistence.pool, "t")
    assert await thread_exists(persistence.pool, "pruned")
    assert not await thread_exists(persistence.pool, "never-used")
    with pytest.raises(UnknownThread):
        await require_thread(persistence.pool, "never-used")


async def test_status_counts_rows_written_just_now(persistence: Persistence) -> None:
    await add_checkpoints(persistence, "t", IDS)
    status = await database_status(persistence.pool)
    counts = {table.name: table.rows for table in status.tables}
    assert counts["checkpoints"] == 3, "exact, not pg_class.reltuples before ANALYZE"
    assert counts["convomem_transcript"] == 0


@pytest.mark.parametrize("junk", ["}, {", "None", "!!!"])
async def test_a_junk_entity_can_be_found_and_forgotten(persistence: Persistence, junk: str) -> None:
    store = persistence.store
    namespace = entity_namespace("u")
    record = EntityRecord(type="MISC", value=junk, first_seen="2026-01-01", last_seen="2026-01-01")
    await store.aput(namespace, f"MISC:{junk}", record.model_dump(), index=False)

    assert await find_entity(store, "u", junk) == (f"MISC:{junk}", record)
    forgotten = await forget_entity(store, "u", f"MISC:{junk}")  # by its stored key
    assert forgotten == record
    assert await store.aget(namespace, f"MISC:{junk}") is None
    assert await forget_entity(store, "u", junk) is None


async def test_a_junk_value_is_forgotten_by_its_exact_value(persistence: Persistence) -> None:
    store = persistence.store
    record = EntityRecord(type="MISC", value="}, {", first_seen="2026-01-01", last_seen="2026-01-01")
    await store.aput(entity_namespace("u"), "MISC:junk-key", record.model_dump(), index=False)
    assert await forget_entity(store, "u", "}, {") == record
    assert await store.aget(entity_namespace("u"), "MISC:junk-key") is None


def with_part(url: str, **changes: str) -> str:
    params = {**conninfo_to_dict(url), **changes}
    return make_conninfo(**params)  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("change", "expected"),
    [
        ({"user": "nobody_here"}, "has no role 'nobody_here'"),
        ({"dbname": "no_such_db"}, "has no database 'no_such_db'"),
        ({"host": "127.0.0.1", "port": "1"}, "Cannot reach Postgres at 127.0.0.1:1/"),
    ],
    ids=["role", "database", "unreachable"],
)
async def test_each_refusal_has_its_own_message(
    database_url: str, change: dict[str, str], expected: str
) -> None:
    with pytest.raises(DatabaseUnavailable) as refused:
        async with open_pool(with_part(database_url, **change)):
            pass
    assert expected in str(refused.value)
    assert "\n" not in str(refused.value)


async def test_a_malformed_url_is_a_config_error_that_does_not_echo_it() -> None:
    with pytest.raises(ConfigError, match="not a Postgres connection URL") as refused:
        async with open_pool("notaurl-secret"):
            pass
    assert "secret" not in str(refused.value)
