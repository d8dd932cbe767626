"""`convomem assistants` (list, show, check) and `--assistant` on the conversation commands, as a script
runs them: JSON listings, one error line per broken file, unknown names refused before anything starts."""

from __future__ import annotations

import json
from pathlib import Path

from graphs.assistants import SHIPPED_DIR, load_assistants
from tests.e2e.cli_support import Cli, assert_clean_error, assert_ok, thread_rows
from tests.fake_openai import FakeOpenAIServer
from tests.integration.support import system_prompt

TRIAGE = load_assistants(SHIPPED_DIR).get("triage")
UNKNOWN = "error: Unknown assistant 'nope': choose from default, recall, travel-planner, triage."


def test_list_show_and_check_the_shipped_assistants(cli: Cli) -> None:
    listed = json.loads(assert_ok(cli.run("assistants", "list", "--json")).stdout)
    assert [a["name"] for a in listed] == ["default", "recall", "travel-planner", "triage"]
    assert all(Path(a["file"]).parent == SHIPPED_DIR for a in listed)
    shown = json.loads(assert_ok(cli.run("assistants", "show", "triage", "--json")).stdout)
    assert shown["response_schema"] == TRIAGE.response_schema
    assert shown["first_message"] == TRIAGE.first_message
    assert "triage" in assert_ok(cli.run("assistants", "list")).stdout
    assert "first_message" in assert_ok(cli.run("assistants", "show", "travel-planner")).stdout
    assert "4 assistants OK" in assert_ok(cli.run("assistants", "check")).stdout
    assert assert_clean_error(cli.run("assistants", "show", "nope")) == UNKNOWN


def test_check_lists_every_broken_file_in_one_line_each(cli: Cli, tmp_path: Path) -> None:
    folder = tmp_path / "assistants"
    folder.mkdir()
    (folder / "ok.toml").write_text('name = "ok"')
    (folder / "hot.toml").write_text('name = "hot"\ntemperature = 5')
    (folder / "tool.toml").write_text('name = "tool"\ntools = ["teleport"]')
    env = {"CONVOMEM_ASSISTANTS_DIR": str(folder)}
    result = cli.run("assistants", "check", env=env)
    assert result.returncode == 1 and "Traceback" not in result.stderr, result.describe()
    assert result.stderr.strip().splitlines() == [
        f"error: {folder / 'hot.toml'}: temperature: Input should be less than or equal to 2",
        f"error: {folder / 'tool.toml'}: tools: unknown tool 'teleport': name a built-in one "
        "(search_conversations, recall_entity, remember, forget) or `package.module:attribute`",
    ]
    line = assert_clean_error(cli.run("chat", "--thread", "t", "--message", "hi", env=env))
    assert line.startswith(f"error: {folder / 'hot.toml'}: temperature:")


def test_chat_with_an_assistant_and_the_thread_goes_on_with_it(
    cli: Cli, fake_model: FakeOpenAIServer, database_url: str
) -> None:
    refused = cli.run("chat", "--thread", "other", "--assistant", "nope", "--message", "hi")
    assert assert_clean_error(refused) == UNKNOWN
    assert fake_model.requests_of("respond") == []
    result = assert_ok(
        cli.run("chat", "--thread", "t", "--assistant", "triage", "--message", "Card declined")
    )
    lines = result.stdout.strip().splitlines()
    assert lines[0] == f"assistant> {TRIAGE.first_message}"  # the new thread's first message, shown first
    reply = json.loads(lines[-1].removeprefix("assistant> "))
    assert set(reply) == {"category", "urgency", "summary"}
    again = assert_ok(cli.run("chat", "--thread", "t", "--message", "Still declined"))
    assert str(TRIAGE.first_message) not in again.stdout
    history = json.loads(assert_ok(cli.run("history", "--thread", "t", "--json")).stdout)
    before_respond = next(c for c in history if "respond" in c["next_nodes"])
    assert_ok(cli.run("replay", "--thread", "t", "--checkpoint", before_respond["checkpoint_id"][:12]))
    prompts = [system_prompt(r) for r in fake_model.requests_of("respond")]
    assert len(prompts) == 3
    assert thread_rows(database_url, "other").checkpoints == ()
    assert all(p.startswith(str(TRIAGE.instructions)) for p in prompts)
