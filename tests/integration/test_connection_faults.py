"""Connection faults: killed backends, a restarted server, a long model wait, PgBouncer (transaction mode)."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import psycopg
import pytest
from psycopg.conninfo import conninfo_to_dict
from psycopg_pool import AsyncConnectionPool

from bench.pgbouncer import pgbouncer
from checkpoint.embedded import start_embedded, stop_embedded
from checkpoint.pool import open_pool
from graphs.api import open_convomem
from graphs.settings import Settings
from nodes.errors import ConvomemError, DatabaseUnavailable, TooManyRuns
from tests.fake_openai import FakeOpenAIServer


def terminate_backends(database_url: str) -> int:
    """pg_terminate_backend on every other session of the test database, as a failover or idle reaper does."""
    with psycopg.connect(database_url, autocommit=True) as admin:
        row = admin.execute(
            "SELECT count(pg_terminate_backend(pid, 5000)) FROM pg_stat_activity "
            "WHERE datname = current_database() AND pid <> pg_backend_pid()"
        ).fetchone()
    return int(row[0]) if row else 0


def message_count(database_url: str, thread: str) -> int:
    with psycopg.connect(database_url) as conn:
        row = conn.execute(
            "SELECT count(*) FROM checkpoints WHERE thread_id = %s AND checkpoint_ns = ''", (thread,)
        ).fetchone()
    return int(row[0]) if row else 0


async def test_pool_recovers_after_its_connections_are_terminated(
    settings: Settings, database_url: str
) -> None:
    async with open_convomem(settings) as cm:
        await cm.send("t", "Hello, I am Alice.")
        assert terminate_backends(database_url) >= 1
        end = await cm.send("t", "Still there?")
        assert end.reply is not None and not end.next_nodes
        assert [m.type for m in (await cm.state("t")).values["messages"]] == ["human", "ai", "human", "ai"]


async def test_connections_killed_during_a_long_model_wait_do_not_fail_the_turn(
    settings: Settings, database_url: str, fake_model: FakeOpenAIServer
) -> None:
    async with open_convomem(settings) as cm:
        await cm.send("t", "Hello, I am Alice.")
        fake_model.set_delay("respond", 2.0)
        turn = asyncio.create_task(cm.send("t", "Tell me something slow."))
        while not fake_model.requests_of("respond")[1:]:
            await asyncio.sleep(0.05)
        assert terminate_backends(database_url) >= 1  # the pool's idle connections die mid-wait
        end = await turn
        assert end.reply is not None and not end.next_nodes
        assert len((await cm.state("t")).values["messages"]) == 4


async def test_pool_recovers_after_a_postgres_restart(
    settings: Settings, postgres_root: tuple[Path, str]
) -> None:
    data_dir, _ = postgres_root
    async with open_convomem(settings) as cm:
        await cm.send("t", "Hello, I am Alice.")
        await asyncio.to_thread(stop_embedded, data_dir)
        await asyncio.to_thread(start_embedded, data_dir)
        end = await cm.send("t", "Back again.")
        assert end.reply is not None and not end.next_nodes
        assert len((await cm.state("t")).values["messages"]) == 4


@pytest.fixture
def pgbouncer_url(database_url: str, tmp_path: Path) -> Iterator[str]:
    """PgBouncer in transaction pooling mode in front of the test database (Debian's pgbouncer)."""
    with pgbouncer(database_url, tmp_path / "pgbouncer") as bouncer:
        yield bouncer.url(str(conninfo_to_dict(database_url)["dbname"]))


async def test_works_behind_pgbouncer_in_transaction_mode(
    settings: Settings, pgbouncer_url: str, database_url: str
) -> None:
    """No prepared statements (prepare_threshold=None): every turn works through transaction pooling."""
    behind = settings.model_copy(update={"database_url": pgbouncer_url})
    async with open_convomem(behind) as first, open_convomem(behind) as second:
        for turn in range(3):
            await first.send("a", f"Turn {turn} on thread a, I am Alice.")
            await second.send("b", f"Turn {turn} on thread b, I am Bob.")
        assert len((await first.state("a")).values["messages"]) == 6
        assert {e.value for e in await second.entities()} >= {"Alice", "Bob"}
    assert message_count(database_url, "a") > 0


async def test_a_stopped_server_is_reported_as_such_and_a_full_lock_pool_as_too_many_runs(
    settings: Settings, postgres_root: tuple[Path, str], fake_model: FakeOpenAIServer
) -> None:
    """Both end in the lock pool's timeout; only one of them is the user's many turns."""
    data_dir, _ = postgres_root
    async with open_convomem(settings, max_concurrent_runs=1) as cm:
        fake_model.set_delay("respond", 30)
        first = asyncio.create_task(cm.send("a", "Hello, I am Alice."))
        while not fake_model.requests_of("respond"):
            await asyncio.sleep(0.05)
        with pytest.raises(TooManyRuns, match="turns at once"):
            await cm.send("b", "Another thread, while the only lock connection is taken.")
        first.cancel()
        with contextlib.suppress(asyncio.CancelledError, ConvomemError):
            await first
        fake_model.set_delay("respond", 0)
        await asyncio.to_thread(stop_embedded, data_dir)
        try:
            with pytest.raises(DatabaseUnavailable, match="Cannot reach Postgres"):
                await cm.send("c", "While the server is down.")
        finally:
            await asyncio.to_thread(start_embedded, data_dir)
        end = await cm.send("c", "Back again.")
        assert end.reply is not None


async def test_a_fresh_connection_skips_the_check_and_one_the_server_ended_is_replaced(
    database_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    checks: list[int] = []
    real_check = AsyncConnectionPool.check_connection

    async def counted(conn: Any) -> None:
        checks.append(conn.pgconn.backend_pid)
        await real_check(conn)

    monkeypatch.setattr(AsyncConnectionPool, "check_connection", staticmethod(counted))
    async with open_pool(database_url, max_size=1) as pool:
        async with pool.connection() as conn:
            first = conn.pgconn.backend_pid
        async with pool.connection() as conn:  # used moments ago, nothing on its socket: no round trip
            assert conn.pgconn.backend_pid == first
        assert checks == []
        assert terminate_backends(database_url) == 1  # waits until the session has ended
        async with pool.connection() as conn:  # its socket says so: checked, failed, replaced
            assert (await (await conn.execute("SELECT 1 AS one")).fetchone()) == {"one": 1}
            second = conn.pgconn.backend_pid
        assert checks == [first] and second != first
        monkeypatch.setattr("checkpoint.pool.FRESH_SECONDS", 0.0)
        async with pool.connection():  # idle longer than FRESH_SECONDS (now 0): always checked
            pass
        assert checks == [first, second]
