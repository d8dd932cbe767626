"""Scenario 2: every bad input is refused with one line, the same words on every path, and nothing is
written anywhere: no row names the case's thread or user that did not before, and the whole database's
rows are as before.

The Python API is the reference: the same bad request goes through it first, on the same thread, and
the path's message must be its message word for word (API: the exception's text; CLI: its `error:`
line; server: the 4xx answer's `detail`). Input only the server can express (a number for a user id, a
message role, extra input or context keys) is refused there with a one-line message too.

Each case has a thread of its own (one finished turn) and a user of its own, so the cases of a path and
database run as one batch, two at a time (a CLI process costs seconds of CPU), each still checked on
its own rows; every test item reports one case of that batch."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any

import pytest

from tests.parity.drivers import Outcome
from tests.parity.probe import Probe
from tests.parity.rig import PROFILE, Rig
from tests.parity.server_driver import user_says
from tests.parity.support import FIRST, thread_with_turns

pytestmark = pytest.mark.timeout(600)  # the first item of a batch runs all of its cases

LANES = 2
"""Cases run at once: the machine's two cores."""
LONG_ID = "x" * 5000
UNKNOWN_CHECKPOINT = str(uuid.UUID(int=0x1F0C0DE0_0000_6000_8000_000000000000))
"""A well-formed checkpoint id no thread has."""
OVERSIZED = "é" * (PROFILE["max_message_bytes"] // 2 + 1)
"""Under the limit in characters, over it in UTF-8 bytes."""
HELLO = "Hello there."


@dataclass(frozen=True)
class Case:
    """A bad request through a driver, on (thread, user); `thread` replaces the case's own thread."""

    name: str
    send: Callable[[Any, str, str], Awaitable[Outcome]]
    thread: str | None = None
    user: str | None = None
    compared: bool = True
    """The Python API can express it too, and its message is the reference."""


def server_run(
    input: Any, context: Callable[[str], dict[str, Any]]
) -> Callable[[Any, str, str], Awaitable[Outcome]]:
    """A raw run request to the server (ServerDriver.run), its context made for the case's user."""

    def send(server: Any, thread: str, user: str) -> Awaitable[Outcome]:
        return server.run(thread, input=input, context=context(user))  # type: ignore[no-any-return]

    return send


CASES = [
    Case("empty-message", lambda d, t, u: d.send(t, "", u)),
    Case("whitespace-message", lambda d, t, u: d.send(t, " \n\t ", u)),
    Case("oversized-message", lambda d, t, u: d.send(t, OVERSIZED, u)),
    Case("nul-character", lambda d, t, u: d.send(t, "before\x00after", u)),
    Case("thread-id-too-long", lambda d, t, u: d.send(t, HELLO, u), thread=LONG_ID),
    Case("thread-id-bad-characters", lambda d, t, u: d.send(t, HELLO, u), thread="no such thread!"),
    Case("user-id-too-long", lambda d, t, u: d.send(t, HELLO, u), user=LONG_ID),
    Case("user-id-bad-characters", lambda d, t, u: d.send(t, HELLO, u), user="ada lovelace!"),
    Case("user-id-with-dot", lambda d, t, u: d.send(t, HELLO, u), user="ada.lovelace"),
    Case("resume-nothing-pending", lambda d, t, u: d.resume(t, "approve", u)),
    Case("continue-nothing-pending", lambda d, t, u: d.resume(t, None, u)),
    Case("replay-unknown-checkpoint", lambda d, t, u: d.replay(t, UNKNOWN_CHECKPOINT, u)),
    Case("fork-unknown-checkpoint", lambda d, t, u: d.fork(t, UNKNOWN_CHECKPOINT, HELLO, u)),
]
SERVER_CASES = [
    Case("user-id-not-a-string", server_run(user_says(HELLO), lambda u: {"user_id": 42}), compared=False),
    Case(
        "unknown-message-role",
        server_run({"messages": [{"role": "wizard", "content": HELLO}]}, lambda u: {"user_id": u}),
        compared=False,
    ),
    Case(
        "extra-input-key",
        server_run({**user_says(HELLO), "summary": "planted"}, lambda u: {"user_id": u}),
        compared=False,
    ),
    Case(
        "unknown-context-key",
        server_run(user_says(HELLO), lambda u: {"user_id": u, "colour": "red"}),
        compared=False,
    ),
    Case(
        "review-memory-not-a-bool",
        server_run(user_says(HELLO), lambda u: {"user_id": u, "review_memory": "yes"}),
        compared=False,
    ),
]


@dataclass(frozen=True)
class Prepared:
    """A case with its own thread (one finished turn) and user."""

    case: Case
    thread: str
    user: str

    @property
    def target(self) -> tuple[str, str]:
        """The (thread, user) the bad request names."""
        return self.case.thread or self.thread, self.case.user or self.user

    def footprint(self, probe: Probe) -> dict[str, list[str]]:
        """The rows naming the case's threads and users, which the refusal must leave as they are."""
        thread, user = self.target
        return probe.footprint(tuple({self.thread, thread}), tuple({self.user, user}))


@dataclass(frozen=True)
class Checked:
    """One case of a batch: what the path and the Python API answered, and what changed."""

    outcome: Outcome
    reference: Outcome | None
    readable: Outcome
    changed: dict[str, tuple[list[str], list[str]]]
    """Tables whose rows naming the case's threads or users differ: (before, after)."""
    database_changed: bool


async def batch(rig: Rig, path: str, db: str, cases: list[Case]) -> dict[str, Checked]:
    """Run every case through `path` once (cached for the items of the batch)."""

    async def run() -> dict[str, Checked]:
        driver, api, probe = await rig.driver(path, db), await rig.api(db), await rig.probe(db)
        lanes = asyncio.Semaphore(LANES)

        async def prepare(case: Case) -> Prepared:
            user = f"bad-{uuid.uuid4().hex[:12]}"
            async with lanes:
                return Prepared(case, await thread_with_turns(rig, driver, db, user, FIRST), user)

        async def refuse(prepared: Prepared) -> Outcome:
            async with lanes:
                return await prepared.case.send(driver, *prepared.target)

        batch = await asyncio.gather(*(prepare(case) for case in cases))
        references = [await p.case.send(api, *p.target) if p.case.compared else None for p in batch]
        before = [p.footprint(probe) for p in batch]
        database = probe.fingerprint()
        outcomes = await asyncio.gather(*(refuse(prepared) for prepared in batch))
        database_changed = probe.fingerprint() != database
        checked = {}
        for prepared, outcome, reference, was in zip(batch, outcomes, references, before, strict=True):
            now = prepared.footprint(probe)
            changed = {table: (was[table], now[table]) for table in now if now[table] != was[table]}
            readable = await driver.readable(prepared.thread)
            checked[prepared.case.name] = Checked(outcome, reference, readable, changed, database_changed)
        return checked

    return await rig.once(("bad input", path, db, tuple(case.name for case in cases)), run)


def assert_refused_and_nothing_written(checked: Checked) -> None:
    assert checked.outcome.refused, f"accepted: {checked.outcome}"
    assert checked.outcome.one_line, f"refused without a one-line message: {checked.outcome}"
    assert not checked.changed, f"rows of the case's thread or user changed: {checked.changed}"
    assert checked.readable.ok, f"the thread does not read after the refusal: {checked.readable}"
    assert not checked.database_changed, "a request of this batch wrote (or deleted) rows somewhere"


@pytest.mark.parametrize("case", CASES, ids=[case.name for case in CASES])
async def test_bad_input_is_refused_alike_and_writes_nothing(
    rig: Rig, path: str, db: str, case: Case
) -> None:
    checked = (await batch(rig, path, db, CASES))[case.name]

    assert checked.reference is not None
    assert checked.reference.refused and checked.reference.one_line, (
        f"the API accepted it: {checked.reference}"
    )
    assert_refused_and_nothing_written(checked)
    assert checked.outcome.message == checked.reference.message  # the Python API's words


@pytest.mark.paths("server")
@pytest.mark.parametrize("case", SERVER_CASES, ids=[case.name for case in SERVER_CASES])
async def test_server_refuses_what_only_it_can_express(rig: Rig, path: str, db: str, case: Case) -> None:
    checked = (await batch(rig, path, db, SERVER_CASES))[case.name]

    assert_refused_and_nothing_written(checked)
