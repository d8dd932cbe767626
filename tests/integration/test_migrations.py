"""Project migrations on real Postgres: recorded, idempotent, ordered, concurrent-safe, shown by status."""

from __future__ import annotations

import asyncio

import pytest
from psycopg import errors

from checkpoint.migrations import (
    MIGRATIONS,
    Migration,
    applied_migrations,
    apply_migrations,
    concurrent_index,
    pending_migrations,
)
from checkpoint.persistence import Persistence, open_persistence, setup_database
from checkpoint.saver import DELETE_RUNS_SQL
from checkpoint.status import database_status
from tests.integration.support import rows

NAMES = [migration.name for migration in MIGRATIONS]
RUN_ID_INDEX = "convomem_checkpoints_run_id_idx"


def ledger(url: str) -> list[tuple[str, object]]:
    return [
        (row[0], row[1])
        for row in rows(url, "SELECT name, applied_at FROM convomem_migrations ORDER BY name")
    ]


def index_validity(url: str, index: str) -> list[bool]:
    found = rows(
        url,
        "SELECT i.indisvalid FROM pg_index i JOIN pg_class c ON c.oid = i.indexrelid WHERE c.relname = %s",
        (index,),
    )
    return [row[0] for row in found]


def test_migration_names_are_unique_and_ordered() -> None:
    assert len(set(NAMES)) == len(NAMES)
    assert sorted(NAMES) == NAMES
    assert all(name[:4].isdigit() and name[4] == "_" for name in NAMES)


async def test_setup_applies_and_records_every_migration(persistence: Persistence, database_url: str) -> None:
    assert [m.name for m in await applied_migrations(persistence.pool)] == NAMES
    assert [name for name, _ in ledger(database_url)] == sorted(NAMES)
    assert index_validity(database_url, RUN_ID_INDEX) == [True]


async def test_setup_is_idempotent(persistence: Persistence, database_url: str) -> None:
    recorded = ledger(database_url)
    assert await apply_migrations(persistence.pool) == []
    await setup_database(persistence)
    await setup_database(persistence)
    assert ledger(database_url) == recorded
    assert index_validity(database_url, RUN_ID_INDEX) == [True]


async def test_concurrent_setups_apply_each_migration_once(database_url: str) -> None:
    async with open_persistence(database_url, setup=False) as bare:
        await bare.checkpointer.setup()
        results = await asyncio.gather(*(apply_migrations(bare.pool) for _ in range(4)))
        assert sorted(name for applied in results for name in applied) == NAMES
        assert [m.name for m in await applied_migrations(bare.pool)] == NAMES


async def test_migrations_apply_in_order_and_a_failure_is_not_recorded(persistence: Persistence) -> None:
    pool = persistence.pool
    first = Migration("9001_items", ("CREATE TABLE test_items (id int PRIMARY KEY, label text)",))
    broken = Migration(
        "9002_broken", ("CREATE TABLE test_half (id int)", "ALTER TABLE test_items ADD COLUMN label text")
    )
    with pytest.raises(errors.DuplicateColumn):
        await apply_migrations(pool, (*MIGRATIONS, first, broken))
    applied = [m.name for m in await applied_migrations(pool)]
    assert applied == [*NAMES, "9001_items"]
    async with pool.connection() as conn:
        half = await (await conn.execute("SELECT to_regclass('test_half') AS t")).fetchone()
    assert half is not None and half["t"] is None  # the failed migration's own transaction rolled back

    fixed = Migration("9002_broken", ("CREATE TABLE test_half (id int)",))
    assert await apply_migrations(pool, (*MIGRATIONS, first, fixed)) == ["9002_broken"]
    assert pending_migrations(await applied_migrations(pool), (*MIGRATIONS, first, fixed)) == []


async def test_interrupted_concurrent_index_is_rebuilt(persistence: Persistence, database_url: str) -> None:
    pool = persistence.pool
    async with pool.connection() as conn:
        await conn.execute("CREATE TABLE test_dupes (v int)")
        await conn.execute("INSERT INTO test_dupes VALUES (1), (1)")
    unique = concurrent_index("9101_unique_v", "test_dupes_v_idx", "ON test_dupes (v)")
    unique = Migration(
        unique.name,
        tuple(s.replace("CREATE INDEX", "CREATE UNIQUE INDEX") for s in unique.statements),
        transactional=False,
        index=unique.index,
    )
    with pytest.raises(errors.UniqueViolation):
        await apply_migrations(pool, (*MIGRATIONS, unique))
    assert index_validity(database_url, "test_dupes_v_idx") == [False]  # what a killed build leaves
    assert "9101_unique_v" not in [m.name for m in await applied_migrations(pool)]

    async with pool.connection() as conn:
        await conn.execute("DELETE FROM test_dupes WHERE ctid = (SELECT max(ctid) FROM test_dupes)")
    assert await apply_migrations(pool, (*MIGRATIONS, unique)) == ["9101_unique_v"]
    assert index_validity(database_url, "test_dupes_v_idx") == [True]


async def test_delete_for_runs_can_use_the_run_id_index(persistence: Persistence) -> None:
    async with persistence.pool.connection() as conn, conn.transaction():
        await conn.execute("SET LOCAL enable_seqscan = off")
        plan = await (await conn.execute("EXPLAIN " + DELETE_RUNS_SQL, (["some-run"],))).fetchall()
    assert RUN_ID_INDEX in "\n".join(str(row["QUERY PLAN"]) for row in plan)


async def test_status_shows_project_migrations(persistence: Persistence) -> None:
    status = await database_status(persistence.pool)
    assert [m.name for m in status.project_migrations] == NAMES
    assert all(m.applied_at is not None for m in status.project_migrations)
    assert status.pending_migrations == ()
    assert status.migrations["convomem_migrations"] == len(NAMES)
    assert "convomem_migrations" in {table.name for table in status.tables}


async def test_status_of_a_database_never_set_up(database_url: str) -> None:
    async with open_persistence(database_url, setup=False) as bare:
        status = await database_status(bare.pool)
        assert status.project_migrations == ()
        assert status.pending_migrations == tuple(NAMES)
        assert "convomem_migrations" not in status.migrations
        assert await applied_migrations(bare.pool) == []
