"""Open a checked connection pool, telling apart why Postgres refused: bad URL, role, database, server."""

from __future__ import annotations

import select
import time
import weakref
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from psycopg import AsyncConnection, Error, OperationalError
from psycopg.conninfo import conninfo_to_dict
from psycopg.pq import ConnStatus, TransactionStatus
from psycopg.rows import dict_row
from psycopg_pool import AsyncConnectionPool, PoolTimeout

from checkpoint.connections import Pool
from nodes.errors import ConfigError, ConvomemError, DatabaseUnavailable

__all__ = [
    "FRESH_SECONDS",
    "Pool",
    "check_unless_fresh",
    "connection_error",
    "describe_url",
    "open_pool",
    "unreachable",
]

_FIX = "check DATABASE_URL (or unset it to use the embedded server)"

# libpq reports a refused login without a SQLSTATE, so the server's words are matched as well.
_REFUSALS: tuple[tuple[tuple[str, ...], tuple[str, ...], str], ...] = (
    (("28P01",), ("password authentication failed",), "Postgres at {where} refused the password of "
     "role {user!r}: {fix}."),
    (("28000",), ("role", "does not exist"), "Postgres at {where} has no role {user!r}: {fix}."),
    (("28000",), ("no pg_hba.conf entry",), "Postgres at {where} does not let role {user!r} connect from "
     "here (pg_hba.conf): {fix}."),
    (("3D000",), ("database", "does not exist"), "Postgres at {where} has no database {dbname!r}: create "
     "it (createdb {dbname}) or {fix}."),
)  # fmt: skip


def describe_url(url: str) -> str:
    """The server part of a URL, without credentials, for error messages."""
    try:
        parts = conninfo_to_dict(url)
    except Exception:
        return "the configured server"
    host = parts.get("host") or "localhost"
    return f"{host}:{parts.get('port') or 5432}/{parts.get('dbname') or ''}"


def _parts(url: str) -> dict[str, str]:
    """The URL's parts; a string libpq cannot parse is a ConfigError that does not echo it (secrets)."""
    try:
        return {key: str(value) for key, value in conninfo_to_dict(url).items()}
    except Error:
        raise ConfigError(
            "DATABASE_URL is not a Postgres connection URL: use postgresql://USER:PASSWORD@HOST:PORT/DBNAME "
            "(or unset it to use the embedded server)."
        ) from None


def connection_error(url: str, error: Error) -> ConvomemError:
    """The one-line error for a failed connection: a refused password, an unknown role or database each
    say so; anything else is an unreachable server."""
    parts = _parts(url)
    code = getattr(error, "sqlstate", None)
    text = str(error)
    where = describe_url(url)
    user, dbname = parts.get("user") or "(default)", parts.get("dbname") or parts.get("user") or ""
    for codes, words, message in _REFUSALS:
        if code in codes or all(word in text for word in words):
            return DatabaseUnavailable(message.format(where=where, user=user, dbname=dbname, fix=_FIX))
    return DatabaseUnavailable(f"Cannot reach Postgres at {where}: {_FIX}.")


async def unreachable(pool: Pool) -> ConvomemError | None:
    """Why getconn timed out: the server's refusal when a fresh connection fails too, else None (every
    connection is in use: the caller says which limit)."""
    if not isinstance(pool.conninfo, str):
        return None
    try:
        probe = await AsyncConnection.connect(pool.conninfo, connect_timeout=2)
    except Error as error:
        return connection_error(pool.conninfo, error)
    await probe.close()
    return None


FRESH_SECONDS = 30.0
"""A connection used less than this long ago is handed out without psycopg_pool's check when nothing has
arrived on its socket. The check (an empty statement) costs a round trip and, on the server, a
transaction: about half of a turn's, since a turn takes a connection for each of its steps. A server that
ends a session (pg_terminate_backend, an idle reaper, a restart, a failover) closes its socket, which
makes it readable: such a connection is checked, fails the check and is replaced, as before. A connection
idle longer than this is always checked (a silent network drop leaves no trace on the socket)."""

RECONNECT_SECONDS = 5.0
"""How long psycopg_pool keeps retrying one lost connection (1 s, then 2 s apart) before giving the slot
up. Its default, 300 s of doubling delays, left a pool waiting up to half a minute for its next attempt
after a long outage, while the server was already back; a free slot is refilled at once by the next
request."""

_last_used: weakref.WeakKeyDictionary[AsyncConnection[object], float] = weakref.WeakKeyDictionary()


async def _mark_used(conn: AsyncConnection[object]) -> None:
    """The pool's `configure` and `reset` callback: when the connection was last known good."""
    _last_used[conn] = time.monotonic()


def _quiet(conn: AsyncConnection[object]) -> bool:
    """Nothing to read on an idle connection's socket: no error, notice or end of file from the server."""
    try:
        readable, _, _ = select.select([conn.pgconn.socket], [], [], 0)
    except (OSError, ValueError, Error):
        return False
    return not readable


async def check_unless_fresh(conn: AsyncConnection[object]) -> None:
    """The pool's `check`: psycopg_pool's own check, skipped for a healthy connection used moments ago."""
    last = _last_used.get(conn)
    healthy = conn.pgconn.status == ConnStatus.OK and conn.pgconn.transaction_status == TransactionStatus.IDLE
    if last is not None and healthy and time.monotonic() - last < FRESH_SECONDS and _quiet(conn):
        return
    await AsyncConnectionPool.check_connection(conn)
    _last_used[conn] = time.monotonic()


@asynccontextmanager
async def open_pool(url: str, *, max_size: int = 10, timeout: float = 30.0) -> AsyncIterator[Pool]:
    """A checked, PgBouncer-safe pool (autocommit, no prepared statements, dict rows)."""
    _parts(url)
    try:  # one direct attempt first: a refused or misspelt server fails now, not after the pool timeout
        probe = await AsyncConnection.connect(url, connect_timeout=max(int(timeout), 1))
        await probe.close()
    except Error as error:
        raise connection_error(url, error) from error
    pool: Pool = AsyncConnectionPool(
        url,
        min_size=1,
        max_size=max_size,
        max_idle=300.0,
        timeout=timeout,
        reconnect_timeout=RECONNECT_SECONDS,
        open=False,
        check=check_unless_fresh,
        configure=_mark_used,
        reset=_mark_used,
        kwargs={"autocommit": True, "prepare_threshold": None, "row_factory": dict_row},
    )
    try:
        await pool.open(wait=True, timeout=timeout)
    except (PoolTimeout, OperationalError) as error:
        await pool.close()
        raise DatabaseUnavailable(f"Cannot reach Postgres at {describe_url(url)}: {_FIX}.") from error
    try:
        yield pool
    finally:
        await pool.close()
