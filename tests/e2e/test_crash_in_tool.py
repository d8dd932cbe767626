"""A process SIGKILLed inside a tool while a parallel tool call had finished: resumed in a new process, the
finished call is not run again (its result was saved as the task's write), the cut one runs again, and
the turn ends with every call answered once."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest
from langchain_core.messages import AIMessage, ToolMessage

from graphs.settings import Settings
from tests.e2e.cli_support import Cli, other_backends, session_processes, state, wait_until
from tests.e2e.server_support import REPO
from tests.e2e.test_crash_resume import head_write_channels

pytestmark = [pytest.mark.slow, pytest.mark.timeout(180)]

THREAD = "tool-crash"
TEXT = 'Do both. [call record {"item": "invoice"}] [call block {}]'


def client(cli: Cli, log: Path, *args: str, block: bool, out: Path) -> subprocess.Popen[bytes]:
    env = {**cli.env, "TOOL_LOG": str(log), "TOOL_BLOCK": "1" if block else "0", "CONVOMEM_USER_ID": "u"}
    with out.open("wb") as stdout:
        return subprocess.Popen(
            [sys.executable, "-m", "tests.e2e.tool_client", *args],
            stdin=subprocess.DEVNULL, stdout=stdout, stderr=subprocess.STDOUT, env=env, cwd=REPO,
            start_new_session=True,
        )  # fmt: skip


def logged(log: Path) -> list[str]:
    return log.read_text().splitlines() if log.exists() else []


def test_a_finished_tool_call_is_not_run_again_after_a_kill(
    cli: Cli, settings: Settings, database_url: str, tmp_path: Path
) -> None:
    log = tmp_path / "tools.log"
    child = client(cli, log, "chat", THREAD, TEXT, block=True, out=tmp_path / "chat.out")
    try:
        wait_until(
            lambda: (
                any(line.startswith("record") for line in logged(log))
                and any(line.startswith("block") for line in logged(log))
                and "messages" in head_write_channels(database_url, THREAD)
            ),
            timeout=60,
            what="the record call saved and the block call hanging",
            alive=child,
        )
        os.kill(child.pid, signal.SIGKILL)
        child.wait(timeout=10)
    finally:
        if child.poll() is None:
            child.kill()
            child.wait(timeout=10)
    assert child.returncode == -signal.SIGKILL
    wait_until(lambda: not session_processes(child.pid), timeout=10, what="the killed session gone")
    wait_until(lambda: not other_backends(database_url), timeout=10, what="its Postgres sessions gone")
    assert state(settings, THREAD).next == ("tools",)

    resumed = client(cli, log, "resume", THREAD, block=False, out=tmp_path / "resume.out")
    assert resumed.wait(timeout=120) == 0, (tmp_path / "resume.out").read_text()

    lines = logged(log)
    assert [line.split()[0] for line in lines] == ["record", "block", "block"], lines  # record ran once
    snapshot = state(settings, THREAD)
    assert snapshot.next == ()
    messages = snapshot.values["messages"]
    call = next(m for m in messages if isinstance(m, AIMessage) and m.tool_calls)
    results = [m for m in messages if isinstance(m, ToolMessage)]
    assert sorted(r.tool_call_id for r in results) == sorted(c["id"] for c in call.tool_calls)
    assert {r.text for r in results} == {"recorded invoice", "unblocked"}
    assert lines[0].split()[2] in {c["id"] for c in call.tool_calls}  # the idempotency key is the call id
    assert isinstance(messages[-1], AIMessage) and messages[-1].text.startswith("Tool said:")
