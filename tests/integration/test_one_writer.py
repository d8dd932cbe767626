"""One writer per thread: two handles (each with its own pools) race on one thread while the first run waits
inside respond; every on-busy strategy leaves one linear history, and a lost lock session is handled."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Awaitable, Callable

import psycopg
import pytest

from checkpoint.locks import LOCK_NAMESPACE, thread_lock_key
from graphs.api import Convomem, ReplyDone, TurnEnded, open_convomem
from graphs.settings import Settings
from nodes.errors import InvalidInput, RunCancelled, ThreadBusy
from tests.fake_openai import FakeOpenAIServer
from tests.integration.support import (
    assert_linear_history,
    checkpoint_run_ids,
    finish,
    lock_sessions,
    message_texts,
    orphan_writes,
    rows,
)

pytestmark = pytest.mark.timeout(120)

THREAD = "race"
HELLO = "Hello, I am Alice."
FIRST = "first message"
SECOND = "second message"
SLOW = 2.0
"""Seconds the first run's respond call waits in the fake model: the second run starts meanwhile."""


@pytest.fixture
async def pair(settings: Settings) -> AsyncIterator[tuple[Convomem, Convomem]]:
    """Two independent handles on the test database, as two clients would have."""
    async with open_convomem(settings) as first, open_convomem(settings) as second:
        await first.send(THREAD, HELLO)
        yield first, second


async def until(condition: Callable[[], Awaitable[bool] | bool], task: asyncio.Task[TurnEnded]) -> None:
    """Poll `condition` (failing early with the task's error if the task ends first)."""
    for _ in range(600):
        found = condition()
        if found if isinstance(found, bool) else await found:
            return
        if task.done():
            task.result()
            raise AssertionError("the first run finished before the condition held")
        await asyncio.sleep(0.02)
    raise AssertionError("condition not reached in 12 s")


async def start_slow_turn(
    cm: Convomem, fake: FakeOpenAIServer, *, delay: float = SLOW
) -> tuple[asyncio.Task[TurnEnded], str]:
    """Start `FIRST` and return once it waits inside respond; later model calls are fast again.
    Also returns the run's id (metadata run_id of its checkpoints)."""
    seen = len(fake.requests_of("respond"))
    fake.set_delay("respond", delay)
    task = asyncio.create_task(finish(cm.chat(THREAD, FIRST)))
    await until(lambda: len(fake.requests_of("respond")) > seen, task)
    fake.set_delay("respond", 0)
    assert await cm.busy(THREAD)
    run_id = checkpoint_run_ids(cm.settings.database_url or "", THREAD)[-1]
    assert run_id is not None
    return task, run_id


def stop_requests(url: str) -> int:
    return int(rows(url, "SELECT count(*) FROM convomem_run_requests")[0][0])


async def test_reject_refuses_every_other_run_and_the_first_completes(
    pair: tuple[Convomem, Convomem], fake_model: FakeOpenAIServer, database_url: str
) -> None:
    first, second = pair
    before = assert_linear_history(database_url, THREAD)
    task, _ = await start_slow_turn(first, fake_model)

    with pytest.raises(ThreadBusy, match=r"busy with another run: wait, or use --on-busy") as refused:
        await second.send(THREAD, SECOND, on_busy="reject")
    assert "\n" not in str(refused.value)
    # The thread's unfinished state is not mistaken for a turn waiting to be resumed: the lock comes first.
    with pytest.raises(ThreadBusy):
        await finish(second.resume(THREAD))
    with pytest.raises(ThreadBusy):
        await finish(second.fork(THREAD, before[-1], SECOND))
    with pytest.raises(ThreadBusy):
        await finish(second.replay(THREAD, before[-1]))

    end = await task
    assert end.reply == f"Noted: {FIRST}" and not end.next_nodes
    state = await second.state(THREAD)
    assert message_texts(state.values["messages"]) == [HELLO, f"Noted: {HELLO}", FIRST, f"Noted: {FIRST}"]
    assert assert_linear_history(database_url, THREAD)[: len(before)] == before
    assert not await second.busy(THREAD)


async def test_enqueue_waits_in_line_and_both_turns_land_in_order(
    pair: tuple[Convomem, Convomem], fake_model: FakeOpenAIServer, database_url: str
) -> None:
    first, second = pair
    task, first_run = await start_slow_turn(first, fake_model)

    queued = asyncio.create_task(finish(second.chat(THREAD, SECOND, on_busy="enqueue")))
    await until(lambda: lock_sessions(database_url, THREAD, granted=False) == 1, task)
    assert not queued.done()

    first_end, second_end = await asyncio.gather(task, queued)
    assert first_end.reply == f"Noted: {FIRST}"
    assert second_end.reply == f"Noted: {SECOND}" and not second_end.next_nodes
    state = await first.state(THREAD)
    assert message_texts(state.values["messages"]) == [
        *(HELLO, f"Noted: {HELLO}"),
        *(FIRST, f"Noted: {FIRST}"),
        *(SECOND, f"Noted: {SECOND}"),
    ]
    assert_linear_history(database_url, THREAD)
    runs = checkpoint_run_ids(database_url, THREAD)
    assert runs.index(first_run) < len(runs) - 1 and runs[-1] != first_run  # the second run came after
    asked = [message_texts(r["messages"], "user")[-1] for r in fake_model.requests_of("respond")]
    assert asked == [HELLO, FIRST, SECOND]


async def test_enqueue_gives_up_after_the_busy_timeout(
    pair: tuple[Convomem, Convomem], fake_model: FakeOpenAIServer, database_url: str
) -> None:
    first, second = pair
    task, _ = await start_slow_turn(first, fake_model)
    with pytest.raises(ThreadBusy, match=r"still busy after 0.3s"):
        await second.send(THREAD, SECOND, on_busy="enqueue", busy_timeout=0.3)
    await task
    state = await second.state(THREAD)
    assert SECOND not in message_texts(state.values["messages"])
    assert_linear_history(database_url, THREAD)


async def test_rollback_cancels_the_running_turn_and_deletes_what_it_wrote(
    pair: tuple[Convomem, Convomem], fake_model: FakeOpenAIServer, database_url: str
) -> None:
    first, second = pair
    before = assert_linear_history(database_url, THREAD)
    # A model call far longer than the test: rollback must not wait for the step to end.
    task, first_run = await start_slow_turn(first, fake_model, delay=60)
    assert first_run in checkpoint_run_ids(database_url, THREAD)

    end = await second.send(THREAD, SECOND, on_busy="rollback")

    assert end.reply == f"Noted: {SECOND}" and not end.next_nodes
    with pytest.raises(RunCancelled, match="rolled this run back") as stopped:
        await task
    assert not stopped.value.kept_progress
    assert first_run not in checkpoint_run_ids(database_url, THREAD)
    assert orphan_writes(database_url, THREAD) == 0
    state = await first.state(THREAD)
    assert message_texts(state.values["messages"]) == [HELLO, f"Noted: {HELLO}", SECOND, f"Noted: {SECOND}"]
    assert assert_linear_history(database_url, THREAD)[: len(before)] == before
    assert stop_requests(database_url) == 0


async def test_interrupt_stops_the_running_turn_after_its_step_and_keeps_its_progress(
    pair: tuple[Convomem, Convomem], fake_model: FakeOpenAIServer, database_url: str
) -> None:
    first, second = pair
    task, first_run = await start_slow_turn(first, fake_model)

    end = await second.send(THREAD, SECOND, on_busy="interrupt")

    assert end.reply == f"Noted: {SECOND}" and not end.next_nodes
    with pytest.raises(RunCancelled, match="interrupted this run") as stopped:
        await task
    assert stopped.value.kept_progress
    # respond was running when the interrupt came: it finished, its checkpoint is kept, and the run
    # stopped there instead of going on to the memory steps.
    assert checkpoint_run_ids(database_url, THREAD).count(first_run) >= 3
    state = await first.state(THREAD)
    assert message_texts(state.values["messages"]) == [
        *(HELLO, f"Noted: {HELLO}"),
        *(FIRST, f"Noted: {FIRST}"),
        *(SECOND, f"Noted: {SECOND}"),
    ]
    assert FIRST in message_texts(fake_model.requests_of("respond")[-1]["messages"], "user")
    assert_linear_history(database_url, THREAD)
    assert stop_requests(database_url) == 0


async def test_interrupt_or_rollback_of_an_idle_thread_is_a_plain_turn(
    pair: tuple[Convomem, Convomem], database_url: str
) -> None:
    first, second = pair
    await first.send(THREAD, FIRST, on_busy="interrupt")
    await second.send(THREAD, SECOND, on_busy="rollback")
    assert len((await first.state(THREAD)).values["messages"]) == 6
    assert_linear_history(database_url, THREAD)


def terminate_lock_session(url: str, thread_id: str, *, then_hold: psycopg.Connection | None = None) -> None:
    """pg_terminate_backend on the session holding the thread's lock (waiting until it is gone); with
    `then_hold`, that connection takes the lock right after, as another writer slipping in would."""
    rows(
        url,
        "SELECT pg_terminate_backend(pid, 5000) FROM pg_locks WHERE locktype = 'advisory' AND granted "
        "AND classid = %s::oid AND objid = (%s::int)::oid AND objsubid = 2",
        (LOCK_NAMESPACE, thread_lock_key(thread_id)),
    )
    if then_hold is not None:
        then_hold.execute("SELECT pg_advisory_lock(%s, %s)", (LOCK_NAMESPACE, thread_lock_key(thread_id)))


async def test_a_killed_lock_session_is_taken_back_and_the_turn_completes(
    pair: tuple[Convomem, Convomem], fake_model: FakeOpenAIServer, database_url: str
) -> None:
    first, _ = pair
    task, _ = await start_slow_turn(first, fake_model)
    terminate_lock_session(database_url, THREAD)
    end = await task
    assert end.reply == f"Noted: {FIRST}" and not end.next_nodes
    assert_linear_history(database_url, THREAD)


async def test_a_lock_taken_by_another_writer_meanwhile_stops_the_run_and_keeps_its_progress(
    pair: tuple[Convomem, Convomem], fake_model: FakeOpenAIServer, database_url: str
) -> None:
    first, second = pair
    task, first_run = await start_slow_turn(first, fake_model)
    with psycopg.connect(database_url, autocommit=True) as intruder:
        terminate_lock_session(database_url, THREAD, then_hold=intruder)
        with pytest.raises(RunCancelled, match="could not be taken back") as stopped:
            await task
        assert stopped.value.kept_progress
    assert first_run in checkpoint_run_ids(database_url, THREAD)
    assert (await second.state(THREAD)).next  # unfinished, resumable
    end = await finish(second.resume(THREAD))
    assert end.reply == f"Noted: {FIRST}" and not end.next_nodes
    assert_linear_history(database_url, THREAD)


async def test_bad_strategy_or_timeout_is_refused_before_anything_runs(
    pair: tuple[Convomem, Convomem], database_url: str
) -> None:
    first, _ = pair
    before = assert_linear_history(database_url, THREAD)
    with pytest.raises(InvalidInput, match="Unknown on-busy strategy 'sometimes'"):
        await first.send(THREAD, SECOND, on_busy="sometimes")
    with pytest.raises(InvalidInput, match="negative"):
        await first.send(THREAD, SECOND, on_busy="enqueue", busy_timeout=-1)
    assert assert_linear_history(database_url, THREAD) == before


async def test_a_message_sent_during_the_previous_turns_memory_work_is_queued_not_refused(
    pair: tuple[Convomem, Convomem], fake_model: FakeOpenAIServer
) -> None:
    """The reply is saved (ReplyDone) and the caller moves on while extraction still runs: the next
    message, from this handle or another, waits for the thread (chat's default) instead of failing."""
    first, second = pair
    fake_model.set_delay("extract", SLOW)
    replied = asyncio.Event()

    async def turn() -> None:
        async for event in first.chat(THREAD, FIRST, reply_done=True):
            if isinstance(event, ReplyDone):
                replied.set()

    memory_work = asyncio.create_task(turn())
    await asyncio.wait_for(replied.wait(), timeout=30)
    assert not memory_work.done() and await first.busy(THREAD)
    fake_model.set_delay("extract", 0)
    end = await second.send(THREAD, SECOND)  # default on_busy: enqueue
    await memory_work
    assert end.reply == f"Noted: {SECOND}" and not end.next_nodes
    state = await second.state(THREAD)
    assert message_texts(state.values["messages"]) == [
        HELLO, f"Noted: {HELLO}", FIRST, f"Noted: {FIRST}", SECOND, f"Noted: {SECOND}",
    ]  # fmt: skip
