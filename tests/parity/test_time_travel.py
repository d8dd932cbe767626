"""Scenarios 6, 7 and 8: the memory review interrupt (approve stores the proposal, reject stores
nothing), replay from a past checkpoint, and fork from a past checkpoint with a new message."""

from __future__ import annotations

import pytest

from tests.fake_openai import FakeOpenAIServer, extract_entities
from tests.integration.support import message_texts
from tests.parity.drivers import Driver
from tests.parity.probe import Probe
from tests.parity.rig import Rig
from tests.parity.support import FIRST, SECOND, assert_finished, assert_ok, observe, thread_with_turns

FORKED = "Actually, I live in Rome."
PROPOSED = sorted(f"{e['type']}:{e['value']}" for e in extract_entities(FIRST))
"""What the fake model's extraction finds in FIRST (its rules are deterministic)."""


@pytest.mark.parametrize("answer", ["approve", "reject"])
async def test_review_pauses_with_the_proposal_and_the_answer_decides_what_is_stored(
    answer: str, path: str, db: str, driver: Driver, probe: Probe, user: str
) -> None:
    thread = await driver.new_thread()

    assert_ok(await driver.send(thread, FIRST, user, review=True), "the reviewed turn")
    paused = await probe.view(thread)
    assert paused.next == ("extract_entities",), paused.next
    [proposal] = paused.interrupts
    assert proposal["type"] == "memory_review", proposal
    assert sorted(f"{e['type']}:{e['value']}" for e in proposal["entities"]) == PROPOSED
    assert await probe.entities(user) == []  # nothing stored before the answer

    assert_ok(await driver.resume(thread, answer, user), f"the {answer} answer")

    view = await probe.view(thread)
    assert_finished(view)
    assert view.ids == paused.ids
    assert await probe.entities(user) == (PROPOSED if answer == "approve" else [])


async def test_replay_from_a_past_checkpoint_reruns_from_there(
    rig: Rig, path: str, db: str, driver: Driver, probe: Probe, user: str, healthy_model: FakeOpenAIServer
) -> None:
    seen = len(healthy_model.requests_of("respond"))
    thread = await thread_with_turns(rig, driver, db, user, FIRST)
    [original] = healthy_model.requests_of("respond")[seen:]
    [point] = [info for info in await probe.history(thread) if info.next_nodes == ("respond",)]
    before = await observe(probe, thread)
    remembered = await probe.entities(user)

    assert_ok(await driver.replay(thread, point.checkpoint_id, user), "the replay")

    [replayed] = healthy_model.requests_of("respond")[seen + 1 :]
    assert replayed["messages"] == original["messages"]  # the same prompt, from the same checkpoint
    view = await probe.view(thread)
    assert_finished(view)
    assert view.texts() == [FIRST] and view.ids[0] == before.view.ids[0]
    assert view.checkpoint_id != before.view.checkpoint_id
    assert before.view.checkpoint_id in probe.rows(thread).checkpoints  # the old branch stays
    assert await driver.history(thread) == [info.checkpoint_id for info in await probe.history(thread)]
    assert await probe.entities(user) == remembered  # the replayed turn's memory is not written twice


async def test_fork_from_a_past_checkpoint_branches_with_the_new_message(
    rig: Rig, path: str, db: str, driver: Driver, probe: Probe, user: str, healthy_model: FakeOpenAIServer
) -> None:
    thread = await thread_with_turns(rig, driver, db, user, FIRST, SECOND)
    [boundary] = [
        info
        for info in await probe.history(thread)
        if info.source == "loop" and info.next_nodes == () and info.messages == 2
    ]
    before = await observe(probe, thread)
    seen = len(healthy_model.requests_of("respond"))

    assert_ok(await driver.fork(thread, boundary.checkpoint_id, FORKED, user), "the fork")

    [request] = healthy_model.requests_of("respond")[seen:]
    asked = message_texts(request["messages"], "user")
    assert FIRST in asked and asked[-1] == FORKED and SECOND not in asked
    view = await probe.view(thread)
    assert_finished(view)
    assert view.texts() == [FIRST, FORKED]
    assert view.ids[:2] == before.view.ids[:2]  # the branch starts from the first turn as it was
    assert before.view.checkpoint_id in probe.rows(thread).checkpoints  # the old branch stays
