"""What a turn saves around the graph: the thread's head is read with its lock, and the graph gets it and
hands back the state it read at the end (real Postgres)."""

from __future__ import annotations

from typing import Any

import pytest

import graphs.turn_graph
import graphs.turn_runner
from checkpoint.locks import hold_thread
from checkpoint.threads import read_run_head
from graphs.api import Convomem

pytestmark = pytest.mark.timeout(120)


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
