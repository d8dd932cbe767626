"""The CLI on a pseudo-terminal: what a person at a terminal sees and types, Ctrl-C and Ctrl-D included."""

from __future__ import annotations

import os
import pty
import re
import select
import signal
import time
from types import TracebackType

from tests.e2e.cli_support import CLI_TIMEOUT, Cli

__all__ = ["CTRL_C", "CTRL_D", "Terminal"]

CTRL_C = b"\x03"
CTRL_D = b"\x04"
_ANSI = re.compile(r"\x1b(\[[0-9;?]*[A-Za-z]|[78])")


class Terminal:
    """`convomem ARGS` with a pty as its controlling terminal; `expect` waits for output, never sleeps."""

    def __init__(self, cli: Cli, *args: str) -> None:
        env = {**cli.env, "TERM": "xterm"}
        command = [*cli.command, *args]
        pid, fd = pty.fork()
        if pid == 0:  # the child: the pty is its stdin, stdout, stderr and controlling terminal
            try:
                os.chdir(cli.cwd)
                os.execve(command[0], command, env)
            finally:
                os._exit(127)
        self.pid, self.fd = pid, fd
        self.output = ""
        """Everything shown so far, ANSI control sequences removed."""
        self._seen = 0
        self.returncode: int | None = None

    def __enter__(self) -> Terminal:
        return self

    def __exit__(
        self, kind: type[BaseException] | None, error: BaseException | None, tb: TracebackType | None
    ) -> None:
        if self.returncode is None:
            os.kill(self.pid, signal.SIGKILL)
            os.waitpid(self.pid, 0)
        os.close(self.fd)

    def send(self, data: str | bytes) -> None:
        os.write(self.fd, data.encode() if isinstance(data, str) else data)

    def line(self, text: str) -> None:
        self.send(text + "\r")

    def _read(self, timeout: float) -> bool:
        ready, _, _ = select.select([self.fd], [], [], timeout)
        if not ready:
            return True
        try:
            chunk = os.read(self.fd, 65536)
        except OSError:  # EIO: the child closed the terminal
            return False
        if not chunk:
            return False
        self.output += _ANSI.sub("", chunk.decode("utf-8", errors="replace"))
        return True

    def expect(self, pattern: str, *, timeout: float = CLI_TIMEOUT) -> str:
        """Wait until `pattern` (a regex) shows up after what earlier expects consumed; returns the text
        from there up to the end of the match."""
        deadline = time.monotonic() + timeout
        compiled = re.compile(pattern)
        while True:
            found = compiled.search(self.output, self._seen)
            if found:
                shown = self.output[self._seen : found.end()]
                self._seen = found.end()
                return shown
            if time.monotonic() > deadline or not self._read(min(0.2, max(deadline - time.monotonic(), 0))):
                if found := compiled.search(self.output, self._seen):
                    continue
                raise AssertionError(f"never saw {pattern!r}; the terminal shows:\n{self.output[-3000:]}")

    def wait(self, timeout: float = CLI_TIMEOUT) -> int:
        """The exit code, reading what is left on the terminal meanwhile."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            pid, status = os.waitpid(self.pid, os.WNOHANG)
            if pid:
                self.returncode = os.waitstatus_to_exitcode(status)
                while self._read(0.05) and select.select([self.fd], [], [], 0)[0]:
                    pass
                return self.returncode
            self._read(0.1)
        raise AssertionError(f"still running after {timeout}s; the terminal shows:\n{self.output[-3000:]}")
