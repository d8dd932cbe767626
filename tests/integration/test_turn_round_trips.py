"""What a turn saves around the graph: the thread's head is read with its lock, the graph gets it and hands
back the state it read at the end, and the run record goes with the lock's release (real Postgres)."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime
from typing import Any

import psycopg
import pytest

import graphs.turn_graph
import graphs.turn_runner
from checkpoint.locks import hold_thread
from checkpoint.run_records import RunRecord
from checkpoint.threads import read_run_head
from graphs.api import Convomem
from tests.integration.support import lock_sessions, rows

pytestmark = pytest.mark.timeout(120)


def _record(thread_id: str) -> RunRecord:
    now = datetime.now(UTC)
    return RunRecord(str(uuid.uuid4()), thread_id, "default", now, now, "ok", 0.0)


def _recorded(url: str, run_id: str) -> int:
    return int(rows(url, "SELECT count(*) FROM convomem_run_records WHERE run_id = %s", (run_id,))[0][0])


async def test_the_lock_reads_the_thread_head_with_it(app: Convomem) -> None:
    async with hold_thread(app.lock_pool, "fresh") as writer:
        assert writer.head is not None and writer.head.checkpoint_id is None, "a new thread has no head"
    await app.send("known", "I work at Acme.", user_id="alice")

    async with hold_thread(app.lock_pool, "known") as writer:
        assert writer.head == await read_run_head(app.persistence.pool, "known")
        assert writer.head is not None and writer.head.checkpoint_id is not None
        assert writer.head.user_id == "alice"


async def test_a_turn_reads_the_head_and_the_final_state_once(
    app: Convomem, monkeypatch: pytest.MonkeyPatch
) -> None:
    await app.send("t", "I work at Acme.", user_id="alice")
    head_reads: list[str] = []
    state_reads: list[Any] = []

    async def counted_head(pool: Any, thread_id: str) -> Any:
        head_reads.append(thread_id)
        return await read_run_head(pool, thread_id)

    for module in (graphs.turn_graph, graphs.turn_runner):
        monkeypatch.setattr(module, "read_run_head", counted_head)
    aget_state = type(app.graph).aget_state

    async def counted_state(self: Any, config: Any, **kwargs: Any) -> Any:
        state_reads.append(config)
        return await aget_state(self, config, **kwargs)

    monkeypatch.setattr(type(app.graph), "aget_state", counted_state)

    ended = await app.send("t", "And I live in Porto.")

    assert head_reads == [], "the head comes with the lock and is handed to the graph's checks"
    assert len(state_reads) == 1, "the graph's look after the run is handed back to the runner"
    assert ended.checkpoint_id is not None and ended.reply
    assert (await read_run_head(app.persistence.pool, "t")).user_id == "alice", "the head's user was used"


async def test_the_run_record_is_written_with_the_locks_release(app: Convomem, database_url: str) -> None:
    record = _record("rec")
    async with hold_thread(app.lock_pool, "rec") as writer:
        writer.write_record_at_release(record)
        assert _recorded(database_url, record.run_id) == 0, "not before the release"
    assert _recorded(database_url, record.run_id) == 1
    assert lock_sessions(database_url, "rec") == 0, "the same round trip freed the lock"


async def test_the_run_record_is_written_when_the_lock_session_died(app: Convomem, database_url: str) -> None:
    record = _record("dead")
    async with hold_thread(app.lock_pool, "dead") as writer:
        writer.write_record_at_release(record)
        with psycopg.connect(database_url, autocommit=True) as admin:
            admin.execute("SELECT pg_terminate_backend(%s)", (writer.lock_pid,))
    assert _recorded(database_url, record.run_id) == 1, "written on a connection of its own"
    assert lock_sessions(database_url, "dead") == 0
