"""One driver per way of using convomem (Python API, CLI, LangGraph Server): the same operations, each
answering with the same normalized Outcome, so one scenario runs through all three with one set of
assertions. The server's driver is in server_driver.py."""

from __future__ import annotations

import asyncio
import json
import os
import re
import signal
import subprocess
import sys
import traceback
import uuid
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal, Protocol

from graphs.api import Convomem, ToolCall, ToolResult
from graphs.cli_render import tool_line
from nodes.errors import ConvomemError, InvalidInput, NothingToResume, UnknownCheckpoint
from tests.e2e.cli_support import Cli, CliResult, assert_clean_error, session_processes
from tests.e2e.server_support import REPO

__all__ = [
    "ApiDriver",
    "CliDriver",
    "Driver",
    "Outcome",
    "Pending",
    "ProcessTurn",
    "TaskTurn",
]

Status = Literal["ok", "refused", "failed", "error"]
REFUSALS = (InvalidInput, NothingToResume, UnknownCheckpoint)
"""What refuses a request before anything is written; any other ConvomemError is a failed turn."""
REFUSAL_NAMES = frozenset(error.__name__ for error in REFUSALS)
MAX_LINE = 300
TURN_TIMEOUT = 120.0
"""Seconds a turn run in another process may take before the test gives up on it."""
_UUID = re.compile(r"\b[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}\b")


@dataclass(frozen=True)
class Outcome:
    """How a request ended, the same way on every path.

    `refused`: turned away before anything was written (API: InvalidInput, NothingToResume,
    UnknownCheckpoint; server: a 4xx answer). `failed`: the turn ran and failed (API: another
    ConvomemError; server: the run's status is not success). `error`: the CLI, which reports both the
    same way (one `error:` line, exit 1), so it counts as either. `message` is the one line a user
    reads, empty when there is none (a traceback, a 5xx, a crash); `detail` is everything for a report.
    """

    status: Status
    message: str = ""
    detail: str = ""
    kind: str | None = None
    """The error class, where the path names one (the API and its subprocess)."""

    @property
    def ok(self) -> bool:
        return self.status == "ok"

    @property
    def refused(self) -> bool:
        return self.status in ("refused", "error")

    @property
    def failed(self) -> bool:
        return self.status in ("failed", "error")

    @property
    def one_line(self) -> bool:
        """A message a user can act on: present, one line, short."""
        return bool(self.message.strip()) and "\n" not in self.message and len(self.message) <= MAX_LINE

    def __str__(self) -> str:
        return f"{self.status} [{self.kind or '-'}]: {self.message!r}\n{self.detail[-3000:]}"


def error_outcome(kind: str, message: str, detail: str = "") -> Outcome:
    status: Status = "refused" if kind in REFUSAL_NAMES else "failed"
    return Outcome(status, message, detail, kind)


def cli_outcome(result: CliResult) -> Outcome:
    """Exit 0: ok. Otherwise exactly one `error:` line and no traceback, or the run counts as a crash."""
    if result.returncode == 0:
        clean = "Traceback" not in result.stderr
        return Outcome("ok" if clean else "failed", detail=result.describe())
    try:
        line = assert_clean_error(result)
    except AssertionError:
        return Outcome("failed", detail=result.describe())
    return Outcome("error", line.removeprefix("error:").strip(), result.describe())


class Pending(Protocol):
    """A turn started in the background: wait for how it ends, or kill what runs it (SIGKILL)."""

    async def outcome(self) -> Outcome: ...

    async def kill(self) -> None: ...


class Driver(Protocol):
    """The operations every path offers. Threads are UUIDs everywhere (LangGraph Server wants them)."""

    path: str

    async def new_thread(self) -> str: ...

    async def send(
        self, thread: str, text: str, user: str, *, review: bool = False, assistant: str | None = None
    ) -> Outcome: ...

    async def send_seeing_tools(self, thread: str, text: str, user: str) -> tuple[Outcome, list[str]]:
        """send(), and the tool calls with their results as the path shows them, as the CLI's lines
        (`⚙ name(arg="value") → first line of the result`)."""
        ...

    async def resume(self, thread: str, value: str | None, user: str) -> Outcome: ...

    async def replay(self, thread: str, checkpoint: str, user: str) -> Outcome: ...

    async def fork(self, thread: str, checkpoint: str, text: str, user: str) -> Outcome: ...

    async def history(self, thread: str) -> list[str]:
        """Checkpoint ids, newest first, as this path lists them."""
        ...

    async def readable(self, thread: str) -> Outcome:
        """Read the thread's state through this path."""
        ...

    async def busy(self, thread: str) -> bool:
        """A run holds the thread (in any process, for the API and CLI; on the server, for the server)."""
        ...

    async def begin(self, thread: str, text: str, user: str, *, killable: bool = False) -> Pending: ...


# ------------------------------------------------------------------------------------- background turns


@dataclass
class TaskTurn:
    """A turn of the in-process API, running as a task of the test's event loop."""

    task: asyncio.Task[Outcome]

    async def outcome(self) -> Outcome:
        return await asyncio.wait_for(self.task, TURN_TIMEOUT)

    async def kill(self) -> None:
        raise AssertionError("an in-process turn cannot be killed: begin(..., killable=True)")


@dataclass
class ProcessTurn:
    """A turn run by a child process in its own session, output to files; `read` turns the exit code
    and the output into an Outcome."""

    process: subprocess.Popen[bytes]
    read: Callable[[int], Outcome]

    async def outcome(self) -> Outcome:
        code = await asyncio.to_thread(self.process.wait, TURN_TIMEOUT)
        return self.read(code)

    async def kill(self) -> None:
        """SIGKILL the child's whole session, and wait until none of it is left."""
        os.killpg(self.process.pid, signal.SIGKILL)
        await asyncio.to_thread(self.process.wait, 10)
        for _ in range(200):
            if not session_processes(self.process.pid):
                return
            await asyncio.sleep(0.05)
        raise AssertionError(f"processes left in the killed session: {session_processes(self.process.pid)}")


def output_files(logs: Path, name: str) -> tuple[Path, Path]:
    stem = f"{name}-{uuid.uuid4().hex[:8]}"
    return logs / f"{stem}.out", logs / f"{stem}.err"


# ------------------------------------------------------------------------------------------ Python API


@dataclass
class ApiDriver:
    """The Python API in this process (`open_convomem(Settings(...))`, opened once per database); a turn
    that must be killable runs in `python -m tests.e2e.api_client` with the same settings instead."""

    cm: Convomem
    env: dict[str, str]
    """The same settings as environment variables, for the child process."""
    logs: Path
    path: str = "api"

    async def new_thread(self) -> str:
        return str(uuid.uuid4())

    @staticmethod
    async def _drain(events: AsyncIterator[Any]) -> Outcome:
        try:
            async for _ in events:
                pass
        except ConvomemError as error:
            return error_outcome(type(error).__name__, str(error))
        except Exception as error:
            return Outcome("failed", detail=traceback.format_exc(), kind=type(error).__name__)
        return Outcome("ok")

    async def send(
        self, thread: str, text: str, user: str, *, review: bool = False, assistant: str | None = None
    ) -> Outcome:
        chat = self.cm.chat(thread, text, user_id=user, review_memory=review or None, assistant=assistant)
        return await self._drain(chat)

    async def send_seeing_tools(self, thread: str, text: str, user: str) -> tuple[Outcome, list[str]]:
        calls: dict[str, ToolCall] = {}
        lines: list[str] = []

        async def watched() -> AsyncIterator[Any]:
            async for event in self.cm.chat(thread, text, user_id=user):
                if isinstance(event, ToolCall):
                    calls[event.id] = event
                elif isinstance(event, ToolResult):
                    lines.append(tool_line(calls.get(event.id), event).plain)
                yield event

        return await self._drain(watched()), lines

    async def resume(self, thread: str, value: str | None, user: str) -> Outcome:
        return await self._drain(self.cm.resume(thread, value, user_id=user))

    async def replay(self, thread: str, checkpoint: str, user: str) -> Outcome:
        return await self._drain(self.cm.replay(thread, checkpoint, user_id=user))

    async def fork(self, thread: str, checkpoint: str, text: str, user: str) -> Outcome:
        return await self._drain(self.cm.fork(thread, checkpoint, text, user_id=user))

    async def history(self, thread: str) -> list[str]:
        return [info.checkpoint_id for info in await self.cm.history(thread, limit=1000)]

    async def readable(self, thread: str) -> Outcome:
        try:
            await self.cm.state(thread)
        except ConvomemError as error:
            return error_outcome(type(error).__name__, str(error))
        except Exception as error:
            return Outcome("failed", detail=traceback.format_exc(), kind=type(error).__name__)
        return Outcome("ok")

    async def busy(self, thread: str) -> bool:
        return await self.cm.busy(thread)

    async def begin(self, thread: str, text: str, user: str, *, killable: bool = False) -> Pending:
        if not killable:
            return TaskTurn(asyncio.create_task(self.send(thread, text, user)))
        out, err = output_files(self.logs, "api")
        with out.open("wb") as stdout, err.open("wb") as stderr:
            process = subprocess.Popen(
                [sys.executable, "-m", "tests.e2e.api_client", "chat", thread, text],
                stdin=subprocess.DEVNULL,
                stdout=stdout,
                stderr=stderr,
                env={**self.env, "CONVOMEM_USER_ID": user},
                cwd=REPO,
                start_new_session=True,
            )

        def read(code: int) -> Outcome:
            lines = out.read_text().strip().splitlines()
            detail = f"exit {code}\n{err.read_text()[-3000:]}"
            if not lines:
                return Outcome("failed", detail=detail)
            answer = json.loads(lines[-1])
            if answer["ok"]:
                return Outcome("ok", detail=detail)
            return error_outcome(answer["error"], answer["message"], detail)

        return ProcessTurn(process, read)


# ------------------------------------------------------------------------------------------------ CLI


@dataclass
class CliDriver:
    """The `convomem` command as a subprocess per operation; messages go through stdin (`-m -`), so a
    NUL character or a long message reaches it as typed."""

    cli: Cli
    logs: Path
    reader: ApiDriver
    """`readable()` reads in this process: `convomem history` is this API in a new process, and one
    process per check would cost seconds each (history() runs the real command)."""
    path: str = "cli"

    async def new_thread(self) -> str:
        return str(uuid.uuid4())

    async def _run(self, *args: str, stdin: str | None = None) -> Outcome:
        return cli_outcome(await asyncio.to_thread(self.cli.run, *args, input=stdin))

    async def send(
        self, thread: str, text: str, user: str, *, review: bool = False, assistant: str | None = None
    ) -> Outcome:
        flags = (["--review"] if review else []) + ([] if assistant is None else ["--assistant", assistant])
        return await self._run("chat", "-t", thread, "-u", user, *flags, "-m", "-", stdin=text)

    async def send_seeing_tools(self, thread: str, text: str, user: str) -> tuple[Outcome, list[str]]:
        result = await asyncio.to_thread(
            self.cli.run, "chat", "-t", thread, "-u", user, "-m", "-", input=text
        )
        lines = [line.rstrip() for line in result.stdout.splitlines() if line.startswith("⚙ ")]
        return cli_outcome(result), lines

    async def resume(self, thread: str, value: str | None, user: str) -> Outcome:
        answer = [] if value is None else ["--value", value]
        return await self._run("resume", "-t", thread, "-u", user, *answer)

    async def replay(self, thread: str, checkpoint: str, user: str) -> Outcome:
        return await self._run("replay", "-t", thread, "-c", checkpoint, "-u", user)

    async def fork(self, thread: str, checkpoint: str, text: str, user: str) -> Outcome:
        return await self._run("fork", "-t", thread, "-c", checkpoint, "-m", text, "-u", user)

    async def history(self, thread: str) -> list[str]:
        result = await asyncio.to_thread(self.cli.run, "history", "-t", thread, "--limit", "1000")
        assert result.returncode == 0, result.describe()
        firsts = (_UUID.search(line) for line in result.stdout.splitlines())
        return [found.group(0) for found in firsts if found is not None]

    async def readable(self, thread: str) -> Outcome:
        return await self.reader.readable(thread)

    async def busy(self, thread: str) -> bool:
        return await self.reader.busy(thread)

    async def begin(self, thread: str, text: str, user: str, *, killable: bool = False) -> Pending:
        out, err = output_files(self.logs, "cli")
        args = ("chat", "-t", thread, "-u", user, "-m", text)
        process = self.cli.start(*args, stdout=out, stderr=err)

        def read(code: int) -> Outcome:
            return cli_outcome(CliResult(args, code, out.read_text(), err.read_text()))

        return ProcessTurn(process, read)
