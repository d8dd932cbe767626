"""The real local model server shared across CLI processes: started by the first `chat -m`, reused by
the next (same pid, no second model load), stopped by `convomem model stop`."""

from __future__ import annotations

import importlib.util
import json
from pathlib import Path

import pytest

from nodes.model_server import STATE_FILE, running_server, stop_server
from tests.e2e.cli_support import Cli, assert_ok, cli_environment

pytestmark = pytest.mark.local_llm


def alive(pid: int) -> bool:
    """Running: a process that ended but whose exit nobody collected (a zombie, when the container's
    init does not reap orphans) is not."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except FileNotFoundError:
        return False
    return stat[stat.rindex(")") + 2] != "Z"


def test_one_shot_chats_share_one_model_server(database_url: str, tmp_path: Path) -> None:
    assert importlib.util.find_spec("llama_cpp"), "install the `local` extra: pip install -e '.[local]'"
    data_dir = tmp_path / "data"
    env = cli_environment(database_url, "unused", data_dir)
    for name in ("OPENAI_BASE_URL", "OPENAI_API_KEY", "CONVOMEM_MODEL"):
        env.pop(name)
    cli = Cli(env=env, cwd=tmp_path)
    try:
        assert_ok(cli.run("chat", "--thread", "a", "--message", "Hello!", timeout=300))
        first = json.loads((data_dir / STATE_FILE).read_text())
        assert running_server(data_dir) is not None, "the server outlives the chat that started it"

        assert_ok(cli.run("chat", "--thread", "a", "--message", "And again.", timeout=300))
        assert json.loads((data_dir / STATE_FILE).read_text()) == first, "the second chat reused it"
        status = json.loads(assert_ok(cli.run("model", "status", "--json")).stdout)
        assert status["pid"] == first["pid"]

        stopped = assert_ok(cli.run("model", "stop"))
        assert "stopped" in stopped.stdout
        assert running_server(data_dir) is None
        assert not alive(first["pid"]), "the server process ended"
    finally:
        stop_server(data_dir)
