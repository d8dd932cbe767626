"""Named, append-only migrations for convomem's own tables and indexes, recorded in `convomem_migrations`.

Upstream's checkpoint and store tables keep their own numbered migrations; these come after them. Never
edit or reorder an entry once released: add a new one. Each runs in its own transaction, except those
that Postgres refuses inside one (`CREATE INDEX CONCURRENTLY`, #2887), which run in autocommit.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from datetime import datetime

from psycopg import OperationalError, sql

from checkpoint.connections import Conn, Pool
from checkpoint.locks import RUN_REQUESTS_DDL
from checkpoint.passage_vectors import EMBEDDING_DDL
from checkpoint.run_records import RUN_RECORDS_DDL
from checkpoint.thread_info import THREADS_DDL
from checkpoint.transcript import TRANSCRIPT_DDL

__all__ = [
    "MIGRATIONS",
    "AppliedMigration",
    "Migration",
    "applied_migrations",
    "apply_migrations",
    "pending_migrations",
]

LEDGER_SQL = """
    CREATE TABLE IF NOT EXISTS convomem_migrations (
        name text PRIMARY KEY,
        applied_at timestamptz NOT NULL DEFAULT now()
    )
"""
RECORD_SQL = "INSERT INTO convomem_migrations (name) VALUES (%s) ON CONFLICT (name) DO NOTHING"
LOCK_KEY = int.from_bytes(hashlib.blake2b(b"convomem_migrations", digest_size=8).digest(), "big", signed=True)
LOCK_POLL_SECONDS = 0.1


@dataclass(frozen=True)
class Migration:
    """One named schema change. `index` names the index a non-transactional migration builds: a build
    that died half-way leaves it INVALID, and it is dropped and rebuilt rather than taken as done."""

    name: str
    statements: tuple[str, ...]
    transactional: bool = True
    index: str | None = None


def concurrent_index(name: str, index: str, definition: str) -> Migration:
    """An index built without blocking writers to its table (so never inside a transaction)."""
    return Migration(
        name=name,
        statements=(f"CREATE INDEX CONCURRENTLY IF NOT EXISTS {index} {definition}",),
        transactional=False,
        index=index,
    )


MIGRATIONS: tuple[Migration, ...] = (
    # delete_for_runs (LangGraph Server's rollback) finds a run's checkpoints by metadata run_id.
    concurrent_index(
        "0001_checkpoints_run_id_index",
        "convomem_checkpoints_run_id_idx",
        "ON checkpoints ((metadata ->> 'run_id')) WHERE metadata ? 'run_id'",
    ),
    # Stop requests from a newer message to the run holding a thread (on_busy rollback / interrupt).
    Migration("0002_run_requests", (RUN_REQUESTS_DDL,)),
    # Every message of every thread, archived before it leaves the working set; full-text searchable.
    Migration("0003_transcript", TRANSCRIPT_DDL),
    # An embedding per transcript passage, for hybrid recall when an embedding model is configured.
    Migration("0004_transcript_embedding", EMBEDDING_DDL),
    # One row per run on every path: status, time per node, time to first token, tokens, errors.
    Migration("0005_run_records", RUN_RECORDS_DDL),
    # A row per thread (owner, title, status, times, message count), backfilled from the transcript.
    Migration("0006_thread_info", THREADS_DDL),
)


@dataclass(frozen=True)
class AppliedMigration:
    name: str
    applied_at: datetime


async def apply_migrations(
    pool: Pool,
    migrations: tuple[Migration, ...] = MIGRATIONS,
    *,
    upstream: Callable[[], Awaitable[None]] | None = None,
) -> list[str]:
    """Apply, in order, the migrations not yet recorded; returns the names applied now.

    Idempotent, and safe when several processes start at once: they take turns on an advisory lock,
    polled rather than waited on, because a session blocked inside a statement would hold a snapshot
    that `CREATE INDEX CONCURRENTLY` in the lock holder waits for. `upstream` (LangGraph's own setup,
    whose first migrations collide when two processes run them at once) runs first, under the lock.
    """
    async with pool.connection() as conn:
        await conn.set_autocommit(True)
        await _take_lock(conn)
        try:
            if upstream is not None:
                await upstream()
            await conn.execute(LEDGER_SQL)
            done = {
                row["name"]
                for row in await (await conn.execute("SELECT name FROM convomem_migrations")).fetchall()
            }
            applied = []
            for migration in migrations:
                if migration.name not in done:
                    await _apply(conn, migration)
                    applied.append(migration.name)
            return applied
        finally:
            with contextlib.suppress(OperationalError):  # a broken connection took the lock with it
                await conn.execute("SELECT pg_advisory_unlock(%s)", (LOCK_KEY,))


async def applied_migrations(pool: Pool) -> list[AppliedMigration]:
    """What the ledger records, oldest first; empty when setup never ran on this database."""
    async with pool.connection() as conn:
        found = await (
            await conn.execute("SELECT to_regclass('convomem_migrations') IS NOT NULL AS ok")
        ).fetchone()
        if not found or not found["ok"]:
            return []
        rows = await (
            await conn.execute("SELECT name, applied_at FROM convomem_migrations ORDER BY applied_at, name")
        ).fetchall()
    return [AppliedMigration(name=row["name"], applied_at=row["applied_at"]) for row in rows]


def pending_migrations(
    applied: Sequence[AppliedMigration], migrations: tuple[Migration, ...] = MIGRATIONS
) -> list[str]:
    """Names of the known migrations missing from `applied` (what `applied_migrations` returned)."""
    done = {migration.name for migration in applied}
    return [migration.name for migration in migrations if migration.name not in done]


async def _take_lock(conn: Conn) -> None:
    while True:
        row = await (await conn.execute("SELECT pg_try_advisory_lock(%s) AS ok", (LOCK_KEY,))).fetchone()
        if row and row["ok"]:
            return
        await asyncio.sleep(LOCK_POLL_SECONDS)


async def _apply(conn: Conn, migration: Migration) -> None:
    if migration.transactional:
        async with conn.transaction():
            for statement in migration.statements:
                await conn.execute(statement)
            await conn.execute(RECORD_SQL, (migration.name,))
        return
    if migration.index is not None:
        await _drop_invalid_index(conn, migration.index)
    for statement in migration.statements:
        await conn.execute(statement)
    await conn.execute(RECORD_SQL, (migration.name,))


async def _drop_invalid_index(conn: Conn, index: str) -> None:
    """Remove the INVALID leftover of an interrupted concurrent build, which IF NOT EXISTS would keep."""
    row = await (
        await conn.execute(
            "SELECT NOT i.indisvalid AS invalid FROM pg_index i "
            "JOIN pg_class c ON c.oid = i.indexrelid JOIN pg_namespace n ON n.oid = c.relnamespace "
            "WHERE c.relname = %s AND n.nspname = current_schema()",
            (index,),
        )
    ).fetchone()
    if row and row["invalid"]:
        await conn.execute(sql.SQL("DROP INDEX CONCURRENTLY IF EXISTS {}").format(sql.Identifier(index)))
