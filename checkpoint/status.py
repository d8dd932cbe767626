"""What `convomem db status` reports: applied migrations and table sizes."""

from __future__ import annotations

from dataclasses import dataclass

from psycopg import sql

from checkpoint.connections import Conn, Pool
from checkpoint.migrations import AppliedMigration, applied_migrations, pending_migrations

__all__ = ["DatabaseStatus", "TableSize", "database_status"]

MIGRATION_TABLES = ("checkpoint_migrations", "store_migrations", "vector_migrations", "convomem_migrations")


@dataclass(frozen=True)
class TableSize:
    name: str
    rows: int
    bytes: int


@dataclass(frozen=True)
class DatabaseStatus:
    server_version: str
    migrations: dict[str, int]
    tables: list[TableSize]
    project_migrations: tuple[AppliedMigration, ...] = ()
    """convomem's own named migrations, as recorded (oldest first)."""
    pending_migrations: tuple[str, ...] = ()
    """Known project migrations not applied yet: `convomem db setup` applies them."""


async def database_status(pool: Pool) -> DatabaseStatus:
    """Read-only: safe on a database setup never ran on (everything shows as missing or pending)."""
    async with pool.connection() as conn:
        version = await (await conn.execute("SHOW server_version")).fetchone()
        rows = await (
            await conn.execute(
                """
                SELECT c.relname AS name, pg_total_relation_size(c.oid) AS bytes
                FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
                WHERE n.nspname = current_schema() AND c.relkind = 'r'
                ORDER BY c.relname
                """
            )
        ).fetchall()
        counts = {row["name"]: await _count_rows(conn, row["name"]) for row in rows}
    migrations = {table: counts[table] for table in MIGRATION_TABLES if table in counts}
    applied = await applied_migrations(pool)
    return DatabaseStatus(
        server_version=str(version["server_version"]) if version else "?",
        migrations=migrations,
        tables=[TableSize(name=r["name"], rows=counts[r["name"]], bytes=int(r["bytes"])) for r in rows],
        project_migrations=tuple(applied),
        pending_migrations=tuple(pending_migrations(applied)),
    )


async def _count_rows(conn: Conn, table: str) -> int:
    """An exact count: pg_class.reltuples is an estimate that reads 0 (or -1) until the table is
    analyzed, so a freshly written table looked empty. The table list is short."""
    query = sql.SQL("SELECT count(*) AS n FROM {}").format(sql.Identifier(table))
    found = await (await conn.execute(query)).fetchone()
    return int(found["n"]) if found else 0
