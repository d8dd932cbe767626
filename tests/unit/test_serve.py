"""`make server` (`python -m graphs.serve`) refuses a busy port with one line saying what to do."""

from __future__ import annotations

import socket
import subprocess
import sys
from collections.abc import Iterator

import pytest

from graphs.serve import PORT_VARIABLE, main, port_is_free


@pytest.fixture
def busy_port() -> Iterator[int]:
    """A loopback port with a listener on it, as a running server would have."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        sock.listen()
        yield int(sock.getsockname()[1])


def test_a_busy_port_is_one_error_line_naming_another(busy_port: int) -> None:
    done = subprocess.run(
        [sys.executable, "-m", "graphs.serve", "--port", str(busy_port)],
        capture_output=True,
        text=True,
        timeout=30,
        check=False,
    )
    assert done.returncode == 1
    assert done.stdout == ""
    assert done.stderr.splitlines() == [
        f"error: port {busy_port} is busy: stop what uses it or run `make server PORT=2100`"
    ]


def test_the_port_variable_is_checked_too(
    busy_port: int, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv(PORT_VARIABLE, str(busy_port))
    assert main([]) == 1
    assert f"port {busy_port} is busy" in capsys.readouterr().err


@pytest.mark.parametrize("value", ["0", "70000", "http", "-1"])
def test_a_port_that_is_not_one_is_refused(value: str, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["--port", value]) == 2
    assert capsys.readouterr().err.startswith("error: port ")


def test_a_released_port_is_free(busy_port: int) -> None:
    assert not port_is_free(busy_port)
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        port = int(sock.getsockname()[1])
    assert port_is_free(port)
