"""Recall across conversations on every path: a plain-words sentence of one thread reaches the model's
prompt when the same user asks about it in another thread, right after the first turn ended; another user
asking the same gets nothing of it."""

from __future__ import annotations

from tests.integration.support import system_prompt
from tests.parity.drivers import Driver
from tests.parity.probe import Probe
from tests.parity.rig import Rig
from tests.parity.support import assert_ok

PLANTED = "my flight leaves at half past six on tuesday"
QUESTION = "when does my flight leave?"


async def ask(rig: Rig, driver: Driver, user: str) -> tuple[str, str]:
    """QUESTION on a new thread of the path; the system prompt the model received, and the thread."""
    thread = await driver.new_thread()
    seen = len(rig.model.requests)
    assert_ok(await driver.send(thread, QUESTION, user), "the question")
    (respond,) = [r for r in rig.model.requests[seen:] if r["kind"] == "respond"]
    return system_prompt(respond), thread


async def test_a_sentence_said_in_one_thread_is_recalled_in_another_for_that_user_only(
    rig: Rig, driver: Driver, probe: Probe, user: str
) -> None:
    planted_in = await driver.new_thread()
    assert_ok(await driver.send(planted_in, PLANTED, user), "the planted sentence")

    prompt, thread = await ask(rig, driver, user)
    assert PLANTED in prompt, prompt
    trace = (await probe.cm.state(thread)).values["memory_trace"]
    recalled = [e for e in trace if e["key"] == "passage" and e["value"] == PLANTED]
    assert [e["thread"] for e in recalled] == [planted_in], trace

    prompt, thread = await ask(rig, driver, f"{user}-other")
    assert PLANTED not in prompt, prompt
    assert not [e for e in (await probe.cm.state(thread)).values["memory_trace"] if e["key"] == "passage"]
