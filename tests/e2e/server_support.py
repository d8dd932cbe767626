"""`langgraph dev` as a real subprocess for end-to-end tests: config, start, readiness, stop, log."""

from __future__ import annotations

import json
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from types import TracebackType
from typing import IO

import httpx

__all__ = ["REPO", "LangGraphDevServer", "free_port", "write_server_config"]

REPO = Path(__file__).resolve().parents[2]
LANGGRAPH = Path(sys.executable).with_name("langgraph")
"""The CLI of the venv running the tests (langgraph-cli[inmem] is a dev dependency)."""
READY_TIMEOUT = 60.0
STOP_TIMEOUT = 20.0


def free_port() -> int:
    """A loopback port nobody listens on right now (bound to port 0, then released)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def write_server_config(directory: Path) -> Path:
    """The repo's langgraph.json with absolute paths, so the server can run from any directory."""
    repo_config = json.loads((REPO / "langgraph.json").read_text())

    def absolute(spec: str) -> str:
        path, _, attr = spec.partition(":")
        return f"{(REPO / path).resolve()}:{attr}"

    config = {
        **repo_config,
        "dependencies": [str(REPO)],
        "graphs": {name: absolute(spec) for name, spec in repo_config["graphs"].items()},
        "checkpointer": {
            **repo_config["checkpointer"],
            "path": absolute(repo_config["checkpointer"]["path"]),
        },
        "store": {**repo_config["store"], "path": absolute(repo_config["store"]["path"])},
    }
    if "app" in repo_config.get("http", {}):  # a custom app, a file path like the others
        config["http"] = {**repo_config["http"], "app": absolute(repo_config["http"]["app"])}
    target = directory / "langgraph.json"
    target.write_text(json.dumps(config, indent=2))
    return target


class LangGraphDevServer:
    """One `langgraph dev --no-reload` process run from `workdir` (where it writes `.langgraph_api/`)."""

    def __init__(self, workdir: Path, env: dict[str, str], *, log_path: Path | None = None) -> None:
        self.workdir = workdir
        self.config = write_server_config(workdir)
        self.env = {**os.environ, **env}
        self.log_path = log_path or workdir / "langgraph-dev.log"
        self.port = 0
        self._process: subprocess.Popen[bytes] | None = None
        self._log: IO[bytes] | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def running(self) -> bool:
        return self._process is not None and self._process.poll() is None

    def log_text(self) -> str:
        return self.log_path.read_text(errors="replace") if self.log_path.exists() else ""

    def log_tail(self, lines: int = 60) -> str:
        return "\n".join(self.log_text().splitlines()[-lines:])

    def start(self) -> LangGraphDevServer:
        """Start and wait for `GET /ok`; the log tail explains a failure."""
        assert self._process is None, "already started"
        self.port = free_port()
        self._log = self.log_path.open("ab")
        self._log.write(f"\n===== langgraph dev on port {self.port} =====\n".encode())
        self._log.flush()
        executable = str(LANGGRAPH) if LANGGRAPH.exists() else shutil.which("langgraph")
        assert executable, "langgraph-cli is not installed: pip install -e '.[dev]'"
        command = [
            executable,
            "dev",
            "--no-browser",
            "--no-reload",
            "--port",
            str(self.port),
            "--config",
            str(self.config),
        ]
        self._process = subprocess.Popen(
            command,
            cwd=self.workdir,
            env=self.env,
            stdin=subprocess.DEVNULL,
            stdout=self._log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
        try:
            self._wait_ready()
        except BaseException:
            self.stop()
            raise
        return self

    def _wait_ready(self) -> None:
        deadline = time.monotonic() + READY_TIMEOUT
        assert self._process is not None
        while True:
            try:
                if httpx.get(f"{self.url}/ok", timeout=1.0).status_code == 200:
                    break
            except httpx.HTTPError:
                pass
            if self._process.poll() is not None:
                raise AssertionError(
                    f"langgraph dev exited with {self._process.returncode} before it was ready:\n"
                    f"{self.log_tail()}"
                )
            if time.monotonic() > deadline:
                raise AssertionError(
                    f"langgraph dev not ready on {self.url} after {READY_TIMEOUT:.0f} s:\n{self.log_tail()}"
                )
            time.sleep(0.2)
        # The server silently moves to another port when ours is busy: then /ok answered someone else.
        assert "already in use" not in self.log_text(), self.log_tail()

    def stop(self) -> int | None:
        """SIGTERM (graceful: the factories exit, `.langgraph_api/` is flushed), SIGKILL after 20 s."""
        process, self._process = self._process, None
        code: int | None = None
        if process is not None:
            if process.poll() is None:
                process.send_signal(signal.SIGTERM)
                try:
                    process.wait(timeout=STOP_TIMEOUT)
                except subprocess.TimeoutExpired:
                    process.kill()
                    process.wait(timeout=STOP_TIMEOUT)
            code = process.returncode
        if self._log is not None:
            self._log.close()
            self._log = None
        return code

    def kill(self) -> int | None:
        """SIGKILL the whole process group at once, as a crash would (nothing is flushed); `start` again
        runs a new server from the same directory."""
        process, self._process = self._process, None
        code: int | None = None
        if process is not None:
            if process.poll() is None:
                os.killpg(process.pid, signal.SIGKILL)
            code = process.wait(timeout=STOP_TIMEOUT)
        if self._log is not None:
            self._log.close()
            self._log = None
        return code

    def __enter__(self) -> LangGraphDevServer:
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()


SERIOUS = ("Traceback", "BlockingError", "[error", "[critical")
"""Log marks of a failure."""
BENIGN = ("Slow graph load",)
"""langgraph-api logs at error level when building the graph takes >250 ms: timing on a loaded machine."""
_ANSI = re.compile(r"\x1b\[[0-9;]*m")


def assert_log_clean(server: LangGraphDevServer) -> None:
    log = _ANSI.sub("", server.log_text())
    found = [
        line
        for line in log.splitlines()
        if any(mark in line for mark in SERIOUS) and not any(mark in line for mark in BENIGN)
    ]
    assert not found, "\n".join(found[:20])


def server_env(database_url: str, model_url: str, data_dir: Path, **extra: str) -> dict[str, str]:
    """What a test server needs: the test's database and the fake model, nothing from outside."""
    return {
        "DATABASE_URL": database_url,
        "OPENAI_BASE_URL": model_url,
        "OPENAI_API_KEY": "test",
        "CONVOMEM_MODEL": "fake-model",
        "CONVOMEM_DATA_DIR": str(data_dir),
        "LANGGRAPH_NO_VERSION_CHECK": "true",
        "LANGSMITH_TRACING": "false",
        # The modules langgraph.json names by import path (graphs.auth) come from this checkout, not
        # from whichever one an editable install points to (a git worktree's tests run its own code).
        "PYTHONPATH": str(REPO),
        **extra,
    }


@contextmanager
def running_dev_server(
    workdir: Path,
    env: dict[str, str],
    check: Callable[[LangGraphDevServer], None] = assert_log_clean,
) -> Iterator[LangGraphDevServer]:
    """A started `langgraph dev`, always stopped, its log checked once it has stopped."""
    server = LangGraphDevServer(workdir, env)
    try:
        yield server.start()
    finally:
        server.stop()
    check(server)
