"""Steps and checks the parity scenarios share: threads with finished turns, and "nothing changed"."""

from __future__ import annotations

from dataclasses import dataclass

from tests.e2e.cli_support import ThreadRows
from tests.parity.drivers import Driver, Outcome
from tests.parity.probe import Probe, ThreadView
from tests.parity.rig import Rig

__all__ = [
    "FIRST",
    "SECOND",
    "Observation",
    "assert_finished",
    "assert_ok",
    "observe",
    "thread_with_turns",
]

FIRST = "My name is Alice and I live in Paris."
SECOND = "I work at Acme in Berlin and I like chess."


def assert_ok(outcome: Outcome, what: str = "the request") -> None:
    assert outcome.ok, f"{what} did not succeed: {outcome}"


async def thread_with_turns(rig: Rig, driver: Driver, db: str, user: str, *texts: str) -> str:
    """A new thread of `driver`'s path with these finished turns. The CLI's setup turns go through the
    Python API on the same database: `convomem chat` is that API in a new process, and a process per
    setup turn would cost seconds each; what a scenario tests still goes through the CLI."""
    thread = await driver.new_thread()
    sender = await rig.api(db) if driver.path == "cli" else driver
    for text in texts:
        assert_ok(await sender.send(thread, text, user), f"setup turn {text!r}")
    return thread


@dataclass(frozen=True)
class Observation:
    """A thread's state and rows, and the whole database's, to compare before and after a request."""

    view: ThreadView
    rows: ThreadRows
    fingerprint: dict[str, tuple[int, str]]


async def observe(probe: Probe, thread: str) -> Observation:
    return Observation(await probe.view(thread), probe.rows(thread), probe.fingerprint())


def assert_finished(view: ThreadView) -> None:
    """Nothing waits: no node due, no interrupt, and the conversation ends on a reply."""
    assert view.next == () and view.interrupts == (), (view.next, view.interrupts)
    assert view.types[-2:] == ["human", "ai"], view.types
