"""The psycopg types every module of checkpoint/ shares: dict-row connections, their pool, their cursors."""

from __future__ import annotations

from psycopg import AsyncConnection, AsyncCursor
from psycopg.rows import DictRow
from psycopg_pool import AsyncConnectionPool

__all__ = ["Conn", "Cursor", "Pool"]

Conn = AsyncConnection[DictRow]
Pool = AsyncConnectionPool[Conn]
Cursor = AsyncCursor[DictRow]
