"""Scenarios 3, 4 and 5: a turn that cannot finish. The model is down; Postgres restarts while the
model is answering; the process running the turn is SIGKILLed mid-turn. Every path must leave the thread
readable and consistent, and the next turn (or the resume) must work the same way."""

from __future__ import annotations

import asyncio

from tests.fake_openai import FakeOpenAIServer
from tests.integration.support import message_texts
from tests.parity.drivers import ApiDriver, Driver
from tests.parity.postgres import PostgresInstance
from tests.parity.probe import Probe, eventually
from tests.parity.rig import Rig
from tests.parity.support import FIRST, SECOND, assert_finished, assert_ok, observe, thread_with_turns

THIRD = "What do you remember about me?"
MODEL_WAIT = 4.0
"""Seconds the model takes while Postgres restarts under the turn: longer than a restart takes."""
KILLED_WAIT = 90.0
"""Seconds the model would take in the killed turn: it is killed long before."""


async def respond_request(model: FakeOpenAIServer, seen: int) -> None:
    await eventually(
        lambda: len(model.requests_of("respond")) > seen, what="the turn's respond request", timeout=60
    )


async def assert_reads_alike(driver: Driver, probe: Probe, thread: str) -> None:
    """The path reads the thread, and lists the checkpoints that are stored."""
    assert_ok(await driver.readable(thread), "reading the thread")
    stored = [info.checkpoint_id for info in await probe.history(thread)]
    assert await driver.history(thread) == stored


async def said(probe: Probe, thread: str) -> list[str]:
    """The user's messages of the thread, each once, in order (the transcript: folds drop none)."""
    return [entry.content for entry in await probe.transcript(thread) if entry.role == "human"]


async def assert_next_turn_works(
    driver: Driver, probe: Probe, thread: str, user: str, model: FakeOpenAIServer, earlier: list[str]
) -> None:
    """A new message goes on from the thread as it is: one new exchange after the `earlier` messages."""
    seen = len(model.requests_of("respond"))
    assert_ok(await driver.send(thread, THIRD, user), "the next turn")
    after = await probe.view(thread)
    assert_finished(after)
    assert after.texts()[-1] == THIRD
    assert await said(probe, thread) == [*earlier, THIRD]
    [request] = model.requests_of("respond")[seen:]
    assert message_texts(request["messages"], "user")[-1] == THIRD


async def test_model_down_fails_the_turn_and_leaves_the_thread_as_it_was(
    rig: Rig, path: str, db: str, driver: Driver, probe: Probe, user: str, healthy_model: FakeOpenAIServer
) -> None:
    thread = await thread_with_turns(rig, driver, db, user, FIRST)
    before = await observe(probe, thread)

    healthy_model.down = True
    outcome = await driver.send(thread, SECOND, user)
    healthy_model.down = False

    assert outcome.failed and outcome.one_line, f"the turn did not fail with one line: {outcome}"
    assert outcome.kind in (None, "ModelUnavailable"), outcome
    await assert_reads_alike(driver, probe, thread)
    after = await observe(probe, thread)
    assert after.view == before.view  # same messages, nothing due (next empty)
    assert after.rows == before.rows  # no checkpoint or pending write of the failed run is left
    await assert_next_turn_works(driver, probe, thread, user, healthy_model, [FIRST])
    request = healthy_model.requests_of("respond")[-1]
    assert SECOND not in message_texts(request["messages"])  # the failed message left no trace


async def test_postgres_restart_during_a_turn_leaves_a_consistent_thread(
    rig: Rig,
    path: str,
    db: str,
    driver: Driver,
    probe: Probe,
    postgres: PostgresInstance,
    user: str,
    healthy_model: FakeOpenAIServer,
) -> None:
    thread = await thread_with_turns(rig, driver, db, user, FIRST)
    before = await observe(probe, thread)
    healthy_model.set_delay("respond", MODEL_WAIT)
    seen = len(healthy_model.requests_of("respond"))
    turn = await driver.begin(thread, SECOND, user)
    await respond_request(healthy_model, seen)

    away = await asyncio.to_thread(postgres.restart)
    outcome = await turn.outcome()
    healthy_model.set_delay("respond", 0)

    assert away < MODEL_WAIT, f"Postgres was away {away:.1f}s, longer than the model's answer took"
    await assert_reads_alike(driver, probe, thread)
    view = await probe.view(thread)
    if outcome.ok:  # the turn survived the restart: it is there once, finished
        assert_finished(view)
        assert await said(probe, thread) == [FIRST, SECOND]
    else:  # it failed: then it is undone, as any failed turn
        assert outcome.failed and outcome.one_line, outcome
        assert view == before.view, f"the failed turn ({outcome.message}) left the thread changed"
    await assert_next_turn_works(driver, probe, thread, user, healthy_model, await said(probe, thread))


async def test_sigkill_mid_turn_then_resume_finishes_it_once(
    rig: Rig,
    path: str,
    db: str,
    driver: Driver,
    api: ApiDriver,
    probe: Probe,
    user: str,
    healthy_model: FakeOpenAIServer,
) -> None:
    thread = await driver.new_thread()
    healthy_model.set_delay("respond", KILLED_WAIT)
    seen = len(healthy_model.requests_of("respond"))
    turn = await driver.begin(thread, FIRST, user, killable=True)
    await respond_request(healthy_model, seen)

    healthy_model.set_delay("respond", 0)  # the blocked request keeps its wait; a re-run gets none
    await turn.kill()
    assert_ok(await driver.readable(thread), "reading the thread after the crash")

    async def idle() -> bool:
        return not await driver.busy(thread)

    await eventually(idle, what="the thread no longer held by the killed run", timeout=60)
    cut = await probe.view(thread)
    resumed = await driver.resume(thread, None, user)
    if cut.next:  # the killed turn waits to be resumed (always so for the API and the CLI)
        assert cut.next == ("respond",) and cut.texts() == [FIRST], (cut.next, cut.texts())
        assert_ok(resumed, "the resume")
    else:  # LangGraph Server re-runs the runs a crash cut short when it starts again: nothing is left
        reference = await api.resume(thread, None, user)
        assert resumed.refused and resumed.one_line, f"not refused as nothing to resume: {resumed}"
        assert resumed.message == reference.message

    view = await probe.view(thread)
    assert_finished(view)
    assert view.texts() == [FIRST]
    assert len(view.texts("ai")) == 1
    archived = [(e.role, e.content) for e in await probe.transcript(thread)]
    assert [role for role, _ in archived] == ["human", "ai"], archived
    assert archived[0][1] == FIRST
