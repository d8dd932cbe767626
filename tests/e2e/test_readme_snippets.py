"""The README's ```python blocks run as written: the Python API one against the test's database and the fake
model, the langgraph-sdk one against a real `langgraph dev`; each checked by the rows it leaves."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

from tests.e2e.server_support import REPO, running_dev_server, server_env
from tests.e2e.test_langgraph_server import entity_keys, rows
from tests.fake_openai import FakeOpenAIServer

pytestmark = [pytest.mark.slow, pytest.mark.timeout(240)]

SNIPPET_TIMEOUT = 120.0
_PYTHON_BLOCK = re.compile(r"^```python\n(.*?)^```", re.DOTALL | re.MULTILINE)


def readme_snippets() -> list[str]:
    return _PYTHON_BLOCK.findall((REPO / "README.md").read_text())


def the_snippet(marker: str) -> str:
    found = [code for code in readme_snippets() if marker in code]
    assert len(found) == 1, f"expected one README python block using {marker}, found {len(found)}"
    return found[0]


def run_snippet(code: str, env: dict[str, str], cwd: Path) -> str:
    """The block as a program in a fresh interpreter, from an empty directory; its stdout."""
    script = cwd / "snippet.py"
    script.write_text(code)
    done = subprocess.run(
        [sys.executable, str(script)],
        cwd=cwd,
        env={**os.environ, **env},
        capture_output=True,
        text=True,
        timeout=SNIPPET_TIMEOUT,
        check=False,
    )
    assert done.returncode == 0, f"exit {done.returncode}\n{done.stdout}\n{done.stderr}"
    return done.stdout


def branched_checkpoints(url: str, thread_id: str) -> list[tuple[object, ...]]:
    """Checkpoints with more than one child: a replay from them started a second branch."""
    return rows(
        url,
        "SELECT parent_checkpoint_id FROM checkpoints"
        " WHERE thread_id = %s AND parent_checkpoint_id IS NOT NULL"
        " GROUP BY parent_checkpoint_id HAVING count(*) > 1",
        (thread_id,),
    )


def test_every_python_block_is_a_complete_program() -> None:
    snippets = readme_snippets()
    assert len(snippets) >= 2
    for code in snippets:
        compile(code, "README.md", "exec")  # top-level `await` is a SyntaxError outside a coroutine


def test_python_api_snippet(database_url: str, fake_model: FakeOpenAIServer, tmp_path: Path) -> None:
    env = server_env(database_url, fake_model.base_url, tmp_path / "data")
    output = run_snippet(the_snippet("cm.replay("), env, tmp_path)

    assert "next:" in output  # the end of the streamed turn was reported
    assert "LOC:lisbon" in entity_keys(database_url, "ada")
    threads = {row[0] for row in rows(database_url, "SELECT DISTINCT thread_id FROM checkpoints")}
    assert threads == {"thread-1", "thread-2"}
    assert branched_checkpoints(database_url, "thread-1"), "the replay did not branch thread-1"


def test_tools_snippet(database_url: str, fake_model: FakeOpenAIServer, tmp_path: Path) -> None:
    """The fake model calls a tool only when told to with a marker the README would not show; what runs
    as written is the program: the tool is offered to the model with its docstring, and the reply streams."""
    env = server_env(database_url, fake_model.base_url, tmp_path / "data")
    output = run_snippet(the_snippet("get_weather"), env, tmp_path)

    assert "Noted: What is the weather in Oslo?" in output
    offered = [
        tool["function"] for request in fake_model.requests_of("respond") for tool in request.get("tools", [])
    ]
    weather = [tool for tool in offered if tool["name"] == "get_weather"]
    assert weather and weather[0]["description"] == "Today's weather in a city."


def test_langgraph_sdk_snippet(database_url: str, fake_model: FakeOpenAIServer, tmp_path: Path) -> None:
    env = server_env(database_url, fake_model.base_url, tmp_path / "data")
    workdir = tmp_path / "server"
    workdir.mkdir()
    with running_dev_server(workdir, env) as server:
        output = run_snippet(the_snippet("langgraph_sdk"), {"CONVOMEM_SERVER_URL": server.url}, tmp_path)

    assert "memory review:" in output
    (thread_id,) = {row[0] for row in rows(database_url, "SELECT DISTINCT thread_id FROM checkpoints")}
    assert thread_id in output
    lisbon = rows(
        database_url,
        "SELECT prefix FROM store WHERE prefix LIKE 'convomem.users.%%.entities' AND key = 'LOC:lisbon'",
    )
    assert lisbon, "the approved review stored nothing"
    assert branched_checkpoints(database_url, thread_id), "the replay did not branch the thread"
