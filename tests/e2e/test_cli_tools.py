"""The CLI with the built-in tools (subprocess, real Postgres, fake model over HTTP): the tool line, the
forget question shown, refused and answered, CONVOMEM_TOOLS selecting tools, and a bad selection."""

from __future__ import annotations

import json

import pytest

from graphs.settings import Settings
from tests.e2e.cli_support import Cli, assert_clean_error, assert_ok, with_api

pytestmark = [pytest.mark.slow, pytest.mark.timeout(180)]


def call(tool_name: str, /, **args: str) -> str:
    return f"[call {tool_name} {json.dumps(args)}]"


def facts(settings: Settings, user: str) -> dict[str, str]:
    profile = with_api(settings, lambda cm: cm.profile(user))
    return profile.current_facts() if profile is not None else {}


def test_remember_then_forget_after_a_yes(cli: Cli, settings: Settings) -> None:
    said = assert_ok(
        cli.run("chat", "-t", "t", "-u", "ann", "-m", call("remember", fact="likes tea", topic="drink"))
    )
    assert '⚙ remember(fact="likes tea", topic="drink") → Saved: drink = likes tea' in said.stdout
    assert facts(settings, "ann") == {"drink": "likes tea"}

    asked = assert_ok(cli.run("chat", "-t", "t", "-u", "ann", "-m", call("forget", what="drink")))
    assert "Forget 1 thing(s) remembered about 'drink'? Answer yes or no." in asked.stdout
    shown = assert_ok(cli.run("pending", "-t", "t", "--json"))
    assert json.loads(shown.stdout)["forget"]["items"] == ["fact drink: likes tea"]
    refused = assert_clean_error(cli.run("resume", "-t", "t", "--value", "maybe"))
    assert "answer yes or no" in refused
    assert "add --value with yes or no" in assert_clean_error(cli.run("resume", "-t", "t"))  # not a yes
    assert facts(settings, "ann") == {"drink": "likes tea"}

    done = assert_ok(cli.run("resume", "-t", "t", "--value", "yes"))
    assert "→ Forgotten: fact drink: likes tea" in done.stdout
    assert facts(settings, "ann") == {}


def test_convomem_tools_selects_what_the_model_is_offered(cli: Cli) -> None:
    # No assistant files: the tools node holds every assistant's tools, so the shipped ones would add theirs.
    folder = cli.cwd / "no-assistants"
    folder.mkdir()
    only = {"CONVOMEM_TOOLS": "remember", "CONVOMEM_ASSISTANTS_DIR": str(folder)}
    said = assert_ok(cli.run("chat", "-t", "t", "-m", call("recall_entity", name="x"), env=only))
    assert "→ error: Error: recall_entity is not a valid tool, try one of [remember]." in said.stdout
    bad = assert_clean_error(
        cli.run("chat", "-t", "t2", "-m", "hi", env={"CONVOMEM_TOOLS": "remember,recall"})
    )
    assert "Unknown built-in tool 'recall' in CONVOMEM_TOOLS" in bad
    rounds = assert_clean_error(cli.run("chat", "-t", "t3", "-m", "hi", env={"CONVOMEM_TOOL_ROUNDS": "99"}))
    assert "tool_rounds" in rounds
