"""One writer per thread across real OS processes: while process A's turn waits inside respond, process B
is refused (reject) or queued behind it (enqueue); a SIGKILLed A frees the thread for the next process."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from graphs.settings import Settings
from tests.e2e.cli_support import cli_environment, other_backends, state, wait_until
from tests.fake_openai import FakeOpenAIServer
from tests.integration.support import assert_linear_history, lock_sessions, message_texts, rows

pytestmark = [pytest.mark.slow, pytest.mark.timeout(180)]

THREAD = "shared"
FIRST = "first message"
SECOND = "second message"
REPO = Path(__file__).resolve().parents[2]
HOLD_SECONDS = 10.0
"""How long A's respond call waits in the fake model: long enough for B to start up and meet it."""
PROCESS_TIMEOUT = 90.0


@dataclass
class Clients:
    """`python -m tests.e2e.api_client` processes on the test's database and fake model."""

    env: dict[str, str]
    logs: Path

    def start(self, name: str, *args: str) -> subprocess.Popen[bytes]:
        with (self.logs / f"{name}.out").open("wb") as out, (self.logs / f"{name}.err").open("wb") as err:
            return subprocess.Popen(
                [sys.executable, "-m", "tests.e2e.api_client", *args],
                stdin=subprocess.DEVNULL,
                stdout=out,
                stderr=err,
                env=self.env,
                cwd=REPO,
                start_new_session=True,
            )

    def outcome(self, name: str, process: subprocess.Popen[bytes]) -> dict[str, Any]:
        """Wait for the process and return its JSON line (failing with its stderr if there is none)."""
        process.wait(PROCESS_TIMEOUT)
        out = (self.logs / f"{name}.out").read_text().strip().splitlines()
        err = (self.logs / f"{name}.err").read_text()
        assert out, f"{name} printed nothing (exit {process.returncode})\n{err[-3000:]}"
        assert "Traceback" not in err, err[-3000:]
        result: dict[str, Any] = json.loads(out[-1])
        assert process.returncode == (0 if result["ok"] else 1)
        return result

    def run(self, name: str, *args: str) -> dict[str, Any]:
        return self.outcome(name, self.start(name, *args))


@pytest.fixture
def clients(database_url: str, fake_model: FakeOpenAIServer, tmp_path: Path) -> Clients:
    logs = tmp_path / "logs"
    logs.mkdir()
    return Clients(cli_environment(database_url, fake_model.base_url, tmp_path / "data"), logs)


def start_holder(
    clients: Clients, fake: FakeOpenAIServer, url: str, *, hold: float = HOLD_SECONDS
) -> subprocess.Popen[bytes]:
    """Process A sends FIRST; returns once its respond call is waiting and it holds the thread's lock."""
    fake.set_delay("respond", hold)
    holder = clients.start("a", "chat", THREAD, FIRST)
    wait_until(
        lambda: bool(fake.requests_of("respond")) and lock_sessions(url, THREAD) == 1,
        timeout=PROCESS_TIMEOUT,
        what="process A inside respond, holding the thread",
        alive=holder,
    )
    fake.set_delay("respond", 0)
    return holder


def asked(fake: FakeOpenAIServer) -> list[str]:
    """The newest user message of every respond request, in the order the model got them."""
    return [message_texts(request["messages"], "user")[-1] for request in fake.requests_of("respond")]


def test_a_second_process_is_refused_while_the_first_runs(
    clients: Clients, fake_model: FakeOpenAIServer, database_url: str
) -> None:
    holder = start_holder(clients, fake_model, database_url)

    refused = clients.run("b", "chat", THREAD, SECOND)

    assert refused["error"] == "ThreadBusy"
    assert refused["message"] == (
        f"Thread {THREAD!r} is busy with another run: wait, or use --on-busy enqueue|rollback|interrupt."
    )
    first = clients.outcome("a", holder)
    assert first == {"ok": True, "reply": f"Noted: {FIRST}", "next": []}
    assert asked(fake_model) == [FIRST]
    assert_linear_history(database_url, THREAD)
    assert lock_sessions(database_url, THREAD) == 0


def test_an_enqueued_process_waits_its_turn_and_history_stays_one_chain(
    clients: Clients, fake_model: FakeOpenAIServer, database_url: str, settings: Settings
) -> None:
    holder = start_holder(clients, fake_model, database_url)

    queued = clients.start("b", "chat", THREAD, SECOND, "--on-busy", "enqueue", "--busy-timeout", "60")
    wait_until(
        lambda: lock_sessions(database_url, THREAD, granted=False) == 1,
        timeout=PROCESS_TIMEOUT,
        what="process B queued for the thread's lock",
        alive=queued,
    )
    assert holder.poll() is None  # B queued while A still runs

    assert clients.outcome("a", holder)["reply"] == f"Noted: {FIRST}"
    assert clients.outcome("b", queued) == {"ok": True, "reply": f"Noted: {SECOND}", "next": []}
    assert asked(fake_model) == [FIRST, SECOND]
    messages = message_texts(state(settings, THREAD).values["messages"])
    assert messages == [FIRST, f"Noted: {FIRST}", SECOND, f"Noted: {SECOND}"]
    run_ids = rows(
        database_url,
        "SELECT metadata ->> 'run_id' FROM checkpoints WHERE thread_id = %s ORDER BY checkpoint_id",
        (THREAD,),
    )
    distinct_in_order = list(dict.fromkeys(row[0] for row in run_ids))
    assert len(distinct_in_order) == 2  # A's checkpoints, then B's: never interleaved
    assert_linear_history(database_url, THREAD)


def test_a_sigkilled_holder_frees_the_thread_for_the_next_process(
    clients: Clients, fake_model: FakeOpenAIServer, database_url: str
) -> None:
    holder = start_holder(clients, fake_model, database_url, hold=120)
    assert clients.run("b", "chat", THREAD, SECOND)["error"] == "ThreadBusy"
    waiting = clients.start("c", "resume", THREAD, "--on-busy", "enqueue", "--busy-timeout", "60")
    wait_until(
        lambda: lock_sessions(database_url, THREAD, granted=False) == 1,
        timeout=PROCESS_TIMEOUT,
        what="process C queued for the thread's lock",
        alive=waiting,
    )

    os.killpg(holder.pid, signal.SIGKILL)
    holder.wait(10)

    # Postgres ends the dead process's session and frees its lock; C gets it and finishes A's turn.
    resumed = clients.outcome("c", waiting)
    assert resumed == {"ok": True, "reply": f"Noted: {FIRST}", "next": []}
    assert asked(fake_model) == [FIRST, FIRST]
    assert_linear_history(database_url, THREAD)
    assert lock_sessions(database_url, THREAD) == 0
    wait_until(lambda: not other_backends(database_url), timeout=10, what="no session left behind")
