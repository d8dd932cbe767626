"""The shared local model server's lifecycle (nodes.model_server) with a stand-in server: Python's
http.server serving a folder that holds `v1/models`, so the health check answers as llama.cpp's does."""

from __future__ import annotations

import json
import os
import sys
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from nodes.errors import ModelUnavailable
from nodes.model_server import (
    STATE_FILE,
    RunningServer,
    bound_log,
    ensure_server,
    running_server,
    stop_server,
)


@pytest.fixture
def data_dir(tmp_path: Path) -> Iterator[Path]:
    folder = tmp_path / "data"
    yield folder
    stop_server(folder)


def stand_in(root: Path, name: str = "a") -> list[str]:
    served = root / f"site-{name}"
    (served / "v1").mkdir(parents=True, exist_ok=True)
    (served / "v1" / "models").write_text('{"data": []}')
    return [sys.executable, "-m", "http.server", "--bind", "127.0.0.1", "--directory", str(served)]


def command_of(base: list[str]) -> Callable[[int], list[str]]:
    return lambda port: [*base, str(port)]


def test_started_once_then_reused_then_stopped(data_dir: Path, tmp_path: Path) -> None:
    command = command_of(stand_in(tmp_path))
    log = data_dir / "server.log"

    first = ensure_server(data_dir, command, log_file=log, timeout=30)
    state = json.loads((data_dir / STATE_FILE).read_text())
    assert (state["pid"], state["port"]) == (first.pid, first.port)
    assert running_server(data_dir) == first

    again = ensure_server(data_dir, command, log_file=log, timeout=30)
    assert again == first, "a later call reuses the running server"
    assert os.getsid(first.pid) == first.pid, "detached: the server leads its own session"

    assert stop_server(data_dir)
    assert running_server(data_dir) is None
    assert not (data_dir / STATE_FILE).exists()
    assert not stop_server(data_dir), "stopping twice says it was not running"


def test_a_dead_server_is_replaced_and_another_command_restarts_it(data_dir: Path, tmp_path: Path) -> None:
    log = data_dir / "server.log"
    first = ensure_server(data_dir, command_of(stand_in(tmp_path)), log_file=log, timeout=30)
    other = ensure_server(data_dir, command_of(stand_in(tmp_path, "b")), log_file=log, timeout=30)
    assert other.pid != first.pid, "another model: the old server is replaced"
    assert running_server(data_dir) == other

    os.killpg(other.pid, 9)
    replacement = ensure_server(data_dir, command_of(stand_in(tmp_path, "b")), log_file=log, timeout=30)
    assert replacement.pid != other.pid


def test_a_garbled_state_file_means_no_server(data_dir: Path) -> None:
    data_dir.mkdir(parents=True)
    (data_dir / STATE_FILE).write_text("{not json")
    assert running_server(data_dir) is None
    (data_dir / STATE_FILE).write_text(
        json.dumps({"pid": 2**22 - 1, "port": 1, "serves": "x", "log_file": "l"})
    )
    assert running_server(data_dir) is None
    assert not stop_server(data_dir)


def test_a_server_that_exits_at_start_is_reported(data_dir: Path) -> None:
    with pytest.raises(ModelUnavailable, match="exited"):
        ensure_server(
            data_dir, lambda port: [sys.executable, "-c", "raise SystemExit(3)"], log_file=data_dir / "l"
        )
    assert running_server(data_dir) is None


def test_the_log_is_rotated_past_its_limit(tmp_path: Path) -> None:
    log = tmp_path / "server.log"
    bound_log(log, limit=10)  # no log yet: nothing to do
    log.write_bytes(b"x" * 11)
    bound_log(log, limit=10)
    assert log.read_bytes() == b""
    assert (tmp_path / "server.log.1").read_bytes() == b"x" * 11
    log.write_bytes(b"y" * 5)
    bound_log(log, limit=10)
    assert log.read_bytes() == b"y" * 5, "under the limit: kept"


def test_a_running_server_knows_its_url() -> None:
    assert RunningServer(pid=1, port=8123, serves="", log_file="").base_url == "http://127.0.0.1:8123/v1"
