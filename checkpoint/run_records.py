"""One row per run (how long, how it ended, what it cost), and the window summaries read from them."""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from checkpoint.connections import Conn, Pool

__all__ = [
    "RUN_RECORDS_DDL",
    "RUN_STATUSES",
    "ErrorGroup",
    "RunRecord",
    "SeriesPoint",
    "WindowStats",
    "delete_run_records_before",
    "read_series",
    "read_window",
    "write_run_record",
]

RUN_STATUSES = ("ok", "error", "interrupted", "cancelled")

RUN_RECORDS_DDL = (
    """
    CREATE TABLE IF NOT EXISTS convomem_run_records (
        run_id text PRIMARY KEY,
        thread_id text,
        user_id text,
        assistant_id text,
        started_at timestamptz NOT NULL,
        ended_at timestamptz NOT NULL,
        status text NOT NULL CHECK (status IN ('ok', 'error', 'interrupted', 'cancelled')),
        duration_seconds double precision NOT NULL,
        node_seconds jsonb NOT NULL DEFAULT '{}'::jsonb,
        first_token_seconds double precision,
        model_calls integer NOT NULL DEFAULT 0,
        input_tokens integer NOT NULL DEFAULT 0,
        output_tokens integer NOT NULL DEFAULT 0,
        tokens_estimated boolean NOT NULL DEFAULT false,
        tool_calls integer NOT NULL DEFAULT 0,
        retries integer NOT NULL DEFAULT 0,
        error_class text,
        error_message text
    )
    """,
    "CREATE INDEX IF NOT EXISTS convomem_run_records_started_idx ON convomem_run_records (started_at)",
    "CREATE INDEX IF NOT EXISTS convomem_run_records_user_idx ON convomem_run_records (user_id, started_at)",
)

_COLUMNS = (
    "run_id, thread_id, user_id, assistant_id, started_at, ended_at, status, duration_seconds, node_seconds, "
    "first_token_seconds, model_calls, input_tokens, output_tokens, tokens_estimated, tool_calls, retries, "
    "error_class, error_message"
)
_INSERT = (
    f"INSERT INTO convomem_run_records ({_COLUMNS}) VALUES "
    "(%s, %s, %s, %s, %s, %s, %s, %s, %s::jsonb, %s, %s, %s, %s, %s, %s, %s, %s, %s) "
    "ON CONFLICT (run_id) DO NOTHING"
)
_ERROR_MESSAGE_LIMIT = 2000


@dataclass(frozen=True)
class RunRecord:
    """How one run went. Tokens are the provider's usage, or counted locally (`tokens_estimated`)."""

    run_id: str
    thread_id: str | None
    user_id: str | None
    started_at: datetime
    ended_at: datetime
    status: str
    duration_seconds: float
    node_seconds: dict[str, float] = field(default_factory=dict)
    first_token_seconds: float | None = None
    model_calls: int = 0
    input_tokens: int = 0
    output_tokens: int = 0
    tokens_estimated: bool = False
    tool_calls: int = 0
    retries: int = 0
    error_class: str | None = None
    error_message: str | None = None
    assistant_id: str | None = None


async def write_run_record(pool: Pool, record: RunRecord) -> None:
    """Insert the row once: a run id written before (a retried write) keeps its first row."""
    message = record.error_message[:_ERROR_MESSAGE_LIMIT] if record.error_message is not None else None
    async with pool.connection() as conn:
        await conn.execute(
            _INSERT,
            (
                record.run_id,
                record.thread_id,
                record.user_id,
                record.assistant_id,
                record.started_at,
                record.ended_at,
                record.status,
                record.duration_seconds,
                json.dumps(record.node_seconds),
                record.first_token_seconds,
                record.model_calls,
                record.input_tokens,
                record.output_tokens,
                record.tokens_estimated,
                record.tool_calls,
                record.retries,
                record.error_class,
                message,
            ),
        )


async def delete_run_records_before(pool: Pool, cutoff: datetime, *, dry_run: bool = False) -> int:
    """Remove (or, in a dry run, count) the records of runs started before `cutoff`."""
    statement = "SELECT count(*) AS n FROM" if dry_run else "WITH gone AS (DELETE FROM"
    tail = "" if dry_run else " RETURNING 1) SELECT count(*) AS n FROM gone"
    async with pool.connection() as conn:
        if not await _table_exists(conn):
            return 0
        row = await (
            await conn.execute(f"{statement} convomem_run_records WHERE started_at < %s{tail}", (cutoff,))
        ).fetchone()
    return int(row["n"]) if row else 0


@dataclass(frozen=True)
class ErrorGroup:
    error_class: str
    count: int
    last_message: str
    last_at: datetime


@dataclass(frozen=True)
class WindowStats:
    """The runs started since a time: counts, percentiles (None without data), tokens, node times."""

    turns: int
    errors: int
    by_status: dict[str, int]
    turn_seconds: dict[str, float | None]
    first_token_seconds: dict[str, float | None]
    input_tokens: int
    output_tokens: int
    tokens_estimated: bool
    node_seconds: dict[str, float]
    error_report: tuple[ErrorGroup, ...]


_WHERE = "started_at >= %(since)s AND (%(user)s::text IS NULL OR user_id = %(user)s::text)"
_PERCENTILES = "ARRAY[0.5, 0.95, 0.99]::float8[]"
_SUMMARY = f"""
    SELECT count(*) AS turns,
           count(*) FILTER (WHERE status = 'error') AS errors,
           percentile_cont({_PERCENTILES}) WITHIN GROUP (ORDER BY duration_seconds) AS turn_p,
           percentile_cont({_PERCENTILES}) WITHIN GROUP (ORDER BY first_token_seconds) AS first_token_p,
           coalesce(sum(input_tokens), 0) AS input_tokens,
           coalesce(sum(output_tokens), 0) AS output_tokens,
           coalesce(bool_or(tokens_estimated), false) AS tokens_estimated
    FROM convomem_run_records WHERE {_WHERE}
"""
_BY_STATUS = f"SELECT status, count(*) AS n FROM convomem_run_records WHERE {_WHERE} GROUP BY status"
_NODES = f"""
    SELECT node.key AS node, avg(node.value::float8) AS seconds
    FROM convomem_run_records, jsonb_each_text(node_seconds) AS node
    WHERE {_WHERE} GROUP BY node.key ORDER BY node.key
"""
_ERRORS = f"""
    SELECT coalesce(error_class, 'unknown') AS error_class, count(*) AS n,
           (array_agg(coalesce(error_message, '') ORDER BY ended_at DESC))[1] AS last_message,
           max(ended_at) AS last_at
    FROM convomem_run_records WHERE status = 'error' AND {_WHERE}
    GROUP BY 1 ORDER BY n DESC, last_at DESC
"""


async def read_window(pool: Pool, since: datetime, *, user_id: str | None = None) -> WindowStats:
    """Summarize the runs started at or after `since` (one user's, or everyone's)."""
    params: dict[str, Any] = {"since": since, "user": user_id}
    async with pool.connection() as conn:
        if not await _table_exists(conn):
            return _empty()
        summary = await (await conn.execute(_SUMMARY, params)).fetchone()
        statuses = await (await conn.execute(_BY_STATUS, params)).fetchall()
        nodes = await (await conn.execute(_NODES, params)).fetchall()
        errors = await (await conn.execute(_ERRORS, params)).fetchall()
    assert summary is not None
    return WindowStats(
        turns=int(summary["turns"]),
        errors=int(summary["errors"]),
        by_status={row["status"]: int(row["n"]) for row in statuses},
        turn_seconds=_percentiles(summary["turn_p"]),
        first_token_seconds=_percentiles(summary["first_token_p"]),
        input_tokens=int(summary["input_tokens"]),
        output_tokens=int(summary["output_tokens"]),
        tokens_estimated=bool(summary["tokens_estimated"]),
        node_seconds={row["node"]: float(row["seconds"]) for row in nodes},
        error_report=tuple(
            ErrorGroup(row["error_class"], int(row["n"]), row["last_message"], row["last_at"])
            for row in errors
        ),
    )


@dataclass(frozen=True)
class SeriesPoint:
    """One time bucket of runs (by start time): counts, median and p95 turn time, median time to first
    token, tokens. A bucket without runs is absent."""

    start: datetime
    turns: int
    errors: int
    turn_p50: float | None
    turn_p95: float | None
    first_token_p50: float | None
    input_tokens: int
    output_tokens: int


_SERIES = f"""
    SELECT to_timestamp(floor(extract(epoch FROM started_at) / %(bucket)s) * %(bucket)s) AS start,
           count(*) AS turns,
           count(*) FILTER (WHERE status = 'error') AS errors,
           percentile_cont(0.5) WITHIN GROUP (ORDER BY duration_seconds) AS turn_p50,
           percentile_cont(0.95) WITHIN GROUP (ORDER BY duration_seconds) AS turn_p95,
           percentile_cont(0.5) WITHIN GROUP (ORDER BY first_token_seconds) AS first_token_p50,
           coalesce(sum(input_tokens), 0) AS input_tokens,
           coalesce(sum(output_tokens), 0) AS output_tokens
    FROM convomem_run_records WHERE {_WHERE} GROUP BY 1 ORDER BY 1
"""


async def read_series(
    pool: Pool, since: datetime, bucket_seconds: float, *, user_id: str | None = None
) -> list[SeriesPoint]:
    """The runs started at or after `since` in buckets of `bucket_seconds`, oldest first."""
    params: dict[str, Any] = {"since": since, "user": user_id, "bucket": bucket_seconds}
    async with pool.connection() as conn:
        if not await _table_exists(conn):
            return []
        rows = await (await conn.execute(_SERIES, params)).fetchall()
    return [
        SeriesPoint(
            start=row["start"],
            turns=int(row["turns"]),
            errors=int(row["errors"]),
            turn_p50=row["turn_p50"],
            turn_p95=row["turn_p95"],
            first_token_p50=row["first_token_p50"],
            input_tokens=int(row["input_tokens"]),
            output_tokens=int(row["output_tokens"]),
        )
        for row in rows
    ]


def _percentiles(values: list[float | None] | None) -> dict[str, float | None]:
    found = list(values or (None, None, None))
    return {"p50": found[0], "p95": found[1], "p99": found[2]}


def _empty() -> WindowStats:
    none = _percentiles(None)
    return WindowStats(0, 0, {}, none, dict(none), 0, 0, False, {}, ())


async def _table_exists(conn: Conn) -> bool:
    row = await (
        await conn.execute("SELECT to_regclass('convomem_run_records') IS NOT NULL AS ok")
    ).fetchone()
    return bool(row and row["ok"])
