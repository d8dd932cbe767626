"""The benchmark's Postgres: one embedded server, a fresh database per variant, and storage per thread."""

from __future__ import annotations

from dataclasses import dataclass

import psycopg
from psycopg import sql
from psycopg.conninfo import conninfo_to_dict, make_conninfo
from psycopg.rows import dict_row

__all__ = ["Storage", "committed_transactions", "create_database", "database_in", "thread_storage"]

CHECKPOINT_TABLES = ("checkpoints", "checkpoint_blobs", "checkpoint_writes")
TRANSCRIPT_TABLE = "convomem_transcript"
STORE_TABLE = "store"
USER_PREFIXES = ("convomem.users.{user}.", "memories.{user}")
"""The store namespaces of a user: convomem's (nodes/namespaces.py) and the LangMem recipe's."""


def database_in(root_url: str, name: str) -> str:
    """The URL of database `name` on the server of `root_url`."""
    params = conninfo_to_dict(root_url)
    params["dbname"] = name
    return make_conninfo(**params)  # type: ignore[arg-type]


def create_database(root_url: str, name: str) -> str:
    """A new, empty database (dropped first if a previous run left it); returns its URL.

    Ends with a CHECKPOINT, so the previous phase's dirty pages are flushed before this one is timed.
    """
    with psycopg.connect(root_url, autocommit=True) as conn:
        conn.execute(sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(name)))
        conn.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name)))
        conn.execute("CHECKPOINT")
    return database_in(root_url, name)


def committed_transactions(url: str) -> int:
    """Transactions committed in the database of `url` so far (each autocommit statement is one)."""
    with psycopg.connect(url, autocommit=True) as conn:
        conn.execute("SELECT pg_stat_force_next_flush()")
        row = conn.execute(
            "SELECT xact_commit FROM pg_stat_database WHERE datname = current_database()"
        ).fetchone()
    return int(row[0]) if row else 0


@dataclass(frozen=True)
class Storage:
    """Bytes one thread uses: its rows per table (values as stored, compressed or not), and the whole
    database's tables with indexes and TOAST (pg_total_relation_size), which holds only that thread
    when each variant has its own database."""

    rows: dict[str, int]
    relations: int

    @property
    def total(self) -> int:
        return sum(self.rows.values())


def _row_bytes(
    conn: psycopg.Connection[dict[str, object]], table: str, where: sql.Composable, *args: str
) -> int:
    """Sum of pg_column_size over every column of the matching rows (on-disk size of each value)."""
    columns = conn.execute(
        "SELECT column_name FROM information_schema.columns "
        "WHERE table_schema = 'public' AND table_name = %s",
        (table,),
    ).fetchall()
    sizes = sql.SQL(" + ").join(
        sql.SQL("coalesce(pg_column_size({}), 0)").format(sql.Identifier(str(c["column_name"])))
        for c in columns
    )
    query = sql.SQL("SELECT coalesce(sum({}), 0)::bigint AS bytes FROM {} WHERE {}").format(
        sizes, sql.Identifier(table), where
    )
    row = conn.execute(query, args).fetchone()
    return int(row["bytes"]) if row else 0  # type: ignore[call-overload]


def thread_storage(url: str, thread_id: str, user_id: str) -> Storage:
    """Checkpoints, blobs and writes of the thread, its transcript rows (when that table exists) and the
    store rows of its user (one user per thread here)."""
    with psycopg.connect(url, autocommit=True, row_factory=dict_row) as conn:
        present = {
            str(r["name"])
            for r in conn.execute(
                "SELECT c.relname AS name FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace "
                "WHERE n.nspname = 'public' AND c.relkind = 'r'"
            ).fetchall()
        }
        by_thread = sql.SQL("thread_id = %s")
        rows = {t: _row_bytes(conn, t, by_thread, thread_id) for t in CHECKPOINT_TABLES if t in present}
        if TRANSCRIPT_TABLE in present:
            rows["transcript"] = _row_bytes(conn, TRANSCRIPT_TABLE, by_thread, thread_id)
        if STORE_TABLE in present:
            prefixes = [prefix.format(user=user_id) for prefix in USER_PREFIXES]
            where = sql.SQL(" OR ").join([sql.SQL("starts_with(prefix, %s)")] * len(prefixes))
            rows["store"] = _row_bytes(conn, STORE_TABLE, where, *prefixes)
        total = conn.execute(
            "SELECT coalesce(sum(pg_total_relation_size(c.oid)), 0)::bigint AS bytes FROM pg_class c "
            "JOIN pg_namespace n ON n.oid = c.relnamespace WHERE n.nspname = 'public' AND c.relkind = 'r'"
        ).fetchone()
        return Storage(rows=rows, relations=int(total["bytes"]) if total else 0)
