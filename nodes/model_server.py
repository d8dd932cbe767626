"""A local model server kept alive between convomem processes, like the embedded Postgres.

The first process that needs it starts it detached (its own session, no parent-death signal) and writes
its pid, port and what it serves to a state file under the data dir; later processes health-check and
reuse it, so a one-shot `chat -m` does not pay for loading the model. `convomem model stop` (and
`convomem db stop`) stop it. Its log is bounded: past LOG_LIMIT bytes it is rotated to one `.1` file.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
import shutil
import signal
import socket
import subprocess
import time
import urllib.request
from collections.abc import Callable, Iterator
from dataclasses import asdict, dataclass
from pathlib import Path

from nodes.errors import ModelUnavailable

__all__ = [
    "LOG_LIMIT",
    "STATE_FILE",
    "RunningServer",
    "bound_log",
    "ensure_server",
    "running_server",
    "stop_server",
]

STATE_FILE = "model-server.json"
LOCK_FILE = "model-server.lock"
LOG_LIMIT = 5 * 1024 * 1024
"""Bytes the server's log may reach before it is rotated (one older file is kept)."""
HEALTH_PATH = "/v1/models"
PORT_PLACEHOLDER = "{port}"
"""Stands for the port in a server command: the command with it is what the server is known by."""

Command = Callable[[int], list[str]]
"""The server's command line for a port."""


@dataclass(frozen=True)
class RunningServer:
    pid: int
    port: int
    serves: str
    """The command line with the port left out: a server started for another model is not reused."""
    log_file: str

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.port}/v1"


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return not _zombie(pid)


def _zombie(pid: int) -> bool:
    with contextlib.suppress(OSError):
        stat = Path(f"/proc/{pid}/stat").read_text()
        return stat[stat.rindex(")") + 2] == "Z"
    return False


def _healthy(port: int) -> bool:
    with (
        contextlib.suppress(OSError),
        urllib.request.urlopen(f"http://127.0.0.1:{port}{HEALTH_PATH}", timeout=2),
    ):
        return True
    return False


def _read_state(data_dir: Path) -> RunningServer | None:
    try:
        return RunningServer(**json.loads((data_dir / STATE_FILE).read_text()))
    except (OSError, ValueError, TypeError):
        return None


@contextlib.contextmanager
def _locked(data_dir: Path) -> Iterator[None]:
    """One process at a time decides whether to start or stop the server (no two servers started)."""
    data_dir.mkdir(parents=True, exist_ok=True)
    with (data_dir / LOCK_FILE).open("a") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(lock, fcntl.LOCK_UN)


def running_server(data_dir: Path) -> RunningServer | None:
    """The server the state file names, if its process lives and it answers."""
    state = _read_state(data_dir)
    if state is None or not _alive(state.pid) or not _healthy(state.port):
        return None
    return state


def bound_log(log_file: Path, limit: int = LOG_LIMIT) -> None:
    """Rotate the log to `<log>.1` once it passes `limit` bytes. The server appends (O_APPEND), so
    truncating the file it still writes to is safe: its next line lands at the new start."""
    with contextlib.suppress(FileNotFoundError):
        if log_file.stat().st_size > limit:
            shutil.copyfile(log_file, log_file.with_name(log_file.name + ".1"))
            os.truncate(log_file, 0)


def ensure_server(
    data_dir: Path, command: Command, *, log_file: Path, timeout: float = 120.0, log_limit: int = LOG_LIMIT
) -> RunningServer:
    """The running server for `command`, reused when one answers; else started detached and waited for."""
    serves = " ".join(part if part != "0" else PORT_PLACEHOLDER for part in command(0))
    with _locked(data_dir):
        bound_log(log_file, log_limit)
        found = running_server(data_dir)
        if found is not None and found.serves == serves:
            return found
        if found is not None:  # another model or chat format: replace it
            _stop(found)
        return _start(data_dir, command, serves, log_file, timeout)


def _start(data_dir: Path, command: Command, serves: str, log_file: Path, timeout: float) -> RunningServer:
    port = _free_port()
    log_file.parent.mkdir(parents=True, exist_ok=True)
    with log_file.open("ab") as log:
        process = subprocess.Popen(
            command(port),
            stdin=subprocess.DEVNULL,
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
    server = RunningServer(pid=process.pid, port=port, serves=serves, log_file=str(log_file))
    deadline = time.monotonic() + timeout
    while not _healthy(port):
        if process.poll() is not None:
            raise ModelUnavailable(f"The local model server exited at start; see {log_file}.")
        if time.monotonic() > deadline:
            _stop(server)
            raise ModelUnavailable(
                f"The local model server did not start in {timeout:.0f} s; see {log_file}."
            )
        time.sleep(0.25)
    state = data_dir / STATE_FILE
    state.with_suffix(".tmp").write_text(json.dumps(asdict(server)))
    state.with_suffix(".tmp").replace(state)
    return server


def _stop(server: RunningServer, wait: float = 10.0) -> None:
    """SIGTERM, then SIGKILL after `wait` seconds; the server leads its own process group."""
    for sig in (signal.SIGTERM, signal.SIGKILL):
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(server.pid, sig)
        deadline = time.monotonic() + wait
        while _alive(server.pid) and time.monotonic() < deadline:
            time.sleep(0.05)
        if not _alive(server.pid):
            return


def stop_server(data_dir: Path) -> bool:
    """Stop the server the state file names; True when one was running."""
    with _locked(data_dir):
        state = _read_state(data_dir)
        (data_dir / STATE_FILE).unlink(missing_ok=True)
        if state is None or not _alive(state.pid):
            return False
        _stop(state)
        return True
