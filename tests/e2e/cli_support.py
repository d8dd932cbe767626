"""Helpers for the CLI end-to-end tests: run `convomem` as a subprocess, probe rows, processes and state."""

from __future__ import annotations

import asyncio
import os
import shutil
import subprocess
import sys
import time
import uuid
from collections.abc import Awaitable, Callable, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar

import psycopg
from langgraph.types import StateSnapshot
from psycopg.conninfo import conninfo_to_dict, make_conninfo

from graphs.api import CheckpointInfo, Convomem, open_convomem
from graphs.settings import Settings
from nodes.memory import EntityRecord
from tests.integration.support import rows

__all__ = [
    "CLI_TIMEOUT",
    "Cli",
    "CliResult",
    "ThreadRows",
    "assert_clean_error",
    "assert_ok",
    "cli_command",
    "cli_environment",
    "closed_port",
    "entities",
    "fresh_database",
    "history",
    "other_backends",
    "session_processes",
    "state",
    "thread_rows",
    "wait_until",
    "with_api",
]

CLI_TIMEOUT = 60.0
"""Seconds any one CLI subprocess may take; a hang fails the test instead of the whole run."""

WIDE_COLUMNS = "400"
"""Rich wraps at 80 columns when output is a pipe; a wide terminal keeps table cells whole."""

_DROPPED_PREFIXES = ("OPENAI_", "CONVOMEM_", "LANGCHAIN_", "LANGSMITH_", "PG")
_DROPPED_NAMES = ("DATABASE_URL", "COLUMNS", "LINES")

T = TypeVar("T")


def cli_command() -> list[str]:
    """The installed `convomem` console script next to this interpreter (else `python -m graphs.cli`)."""
    script = Path(sys.executable).with_name("convomem")
    if script.exists():
        return [str(script)]
    found = shutil.which("convomem")
    return [found] if found else [sys.executable, "-m", "graphs.cli"]


def cli_environment(
    database_url: str, base_url: str, data_dir: Path, extra: Mapping[str, str] | None = None
) -> dict[str, str]:
    """os.environ without anything that could leak into a run, plus the test database and fake model."""
    env = {
        key: value
        for key, value in os.environ.items()
        if not key.startswith(_DROPPED_PREFIXES) and key not in _DROPPED_NAMES
    }
    env.update(
        DATABASE_URL=database_url,
        OPENAI_BASE_URL=base_url,
        OPENAI_API_KEY="test",
        CONVOMEM_MODEL="fake-model",
        CONVOMEM_DATA_DIR=str(data_dir),
        PYTHONUNBUFFERED="1",
        COLUMNS=WIDE_COLUMNS,
        NO_COLOR="1",
    )
    env.update(extra or {})
    return env


@dataclass(frozen=True)
class CliResult:
    args: tuple[str, ...]
    returncode: int
    stdout: str
    stderr: str

    def describe(self) -> str:
        return (
            f"convomem {' '.join(self.args)[:200]} -> exit {self.returncode}\n"
            f"--- stdout ---\n{self.stdout[-3000:]}\n--- stderr ---\n{self.stderr[-3000:]}"
        )


@dataclass
class Cli:
    """Runs the real CLI with a fixed environment; every run is bounded by a timeout."""

    env: dict[str, str]
    cwd: Path
    command: list[str] = field(default_factory=cli_command)

    def run(
        self,
        *args: str | bytes,
        input: str | bytes | None = None,
        env: Mapping[str, str] | None = None,
        timeout: float = CLI_TIMEOUT,
    ) -> CliResult:
        """Run to completion. stdin is never inherited: a TTY there would make chat interactive."""
        data = input.encode() if isinstance(input, str) else input
        completed = subprocess.run(
            [*self.command, *args],
            input=data,
            stdin=None if data is not None else subprocess.DEVNULL,
            capture_output=True,
            env={**self.env, **(env or {})},
            cwd=self.cwd,
            timeout=timeout,
            check=False,
        )
        return CliResult(
            args=tuple(a if isinstance(a, str) else repr(a) for a in args),
            returncode=completed.returncode,
            stdout=completed.stdout.decode("utf-8", errors="replace"),
            stderr=completed.stderr.decode("utf-8", errors="replace"),
        )

    def start(
        self, *args: str, stdout: Path, stderr: Path, env: Mapping[str, str] | None = None
    ) -> subprocess.Popen[bytes]:
        """Start in its own session (so its descendants can be found), output to files (no pipe stalls)."""
        with stdout.open("wb") as out, stderr.open("wb") as err:
            return subprocess.Popen(
                [*self.command, *args],
                stdin=subprocess.DEVNULL,
                stdout=out,
                stderr=err,
                env={**self.env, **(env or {})},
                cwd=self.cwd,
                start_new_session=True,
            )


def assert_ok(result: CliResult) -> CliResult:
    assert result.returncode == 0, result.describe()
    assert "Traceback" not in result.stderr, result.describe()
    return result


def assert_clean_error(result: CliResult) -> str:
    """Exit code != 0 and exactly one short `error:` line on stderr, never a traceback."""
    assert result.returncode != 0, result.describe()
    assert "Traceback" not in result.stderr, result.describe()
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, f"expected one error line\n{result.describe()}"
    assert lines[0].startswith("error:"), result.describe()
    assert len(lines[0]) <= 300, result.describe()
    return lines[0]


# ------------------------------------------------------------------------------ rows and databases


@dataclass(frozen=True)
class ThreadRows:
    """A thread's checkpoints and pending writes, to show a refused command changed nothing."""

    checkpoints: tuple[str, ...]
    writes: tuple[tuple[str, str, int, str], ...]


def thread_rows(url: str, thread_id: str) -> ThreadRows:
    checkpoints = rows(
        url,
        "SELECT checkpoint_id FROM checkpoints WHERE thread_id = %s ORDER BY checkpoint_ns, checkpoint_id",
        (thread_id,),
    )
    writes = rows(
        url,
        "SELECT checkpoint_id, task_id, idx, channel FROM checkpoint_writes WHERE thread_id = %s "
        "ORDER BY checkpoint_id, task_id, idx",
        (thread_id,),
    )
    return ThreadRows(tuple(r[0] for r in checkpoints), tuple(tuple(r) for r in writes))


@contextmanager
def fresh_database(root_url: str) -> Iterator[str]:
    """A new, empty database on the embedded server (like the `database_url` fixture, any scope)."""
    name = f"e2e_{uuid.uuid4().hex[:16]}"
    with psycopg.connect(root_url, autocommit=True) as conn:
        conn.execute(f'CREATE DATABASE "{name}"')
    params = conninfo_to_dict(root_url)
    params["dbname"] = name
    try:
        yield make_conninfo(**params)  # type: ignore[arg-type]
    finally:
        with psycopg.connect(root_url, autocommit=True) as conn:
            conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


def other_backends(url: str) -> list[tuple[Any, ...]]:
    """Server sessions on this database other than the probe itself (a killed client's must go away)."""
    return rows(
        url,
        "SELECT pid, application_name, state FROM pg_stat_activity "
        "WHERE datname = current_database() AND pid <> pg_backend_pid() AND backend_type = 'client backend'",
    )


# ------------------------------------------------------------------------------------ processes


def session_processes(session_id: int) -> list[int]:
    """Live (non-zombie) processes whose session id is `session_id` (a child started in a new session)."""
    found = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text()
        except OSError:
            continue
        # pid (comm) state ppid pgrp session ...; comm may contain spaces, so split after the last ')'.
        fields = stat[stat.rindex(")") + 2 :].split()
        if fields[0] != "Z" and int(fields[3]) == session_id:
            found.append(int(entry.name))
    return found


def wait_until(
    condition: Callable[[], bool], *, timeout: float, what: str, alive: subprocess.Popen[bytes] | None = None
) -> None:
    """Poll until `condition()`; fail with `what` on timeout, or early when `alive` exited."""
    deadline = time.monotonic() + timeout
    while not condition():
        if alive is not None and alive.poll() is not None:
            raise AssertionError(f"the child exited (code {alive.returncode}) before: {what}")
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout}s waiting for: {what}")
        time.sleep(0.05)


def closed_port() -> int:
    """A loopback port nothing listens on (bound, then released)."""
    import socket

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


# ------------------------------------------------------------------------ the Python API, in-process


def with_api(settings: Settings, work: Callable[[Convomem], Awaitable[T]]) -> T:
    async def main() -> T:
        async with open_convomem(settings) as cm:
            return await work(cm)

    return asyncio.run(main())


def state(settings: Settings, thread_id: str) -> StateSnapshot:
    return with_api(settings, lambda cm: cm.state(thread_id))


def history(settings: Settings, thread_id: str) -> list[CheckpointInfo]:
    return with_api(settings, lambda cm: cm.history(thread_id, limit=1000))


def entities(settings: Settings, user_id: str) -> list[EntityRecord]:
    return with_api(settings, lambda cm: cm.entities(user_id))
