"""Logging at the command line: -v/-vv and CONVOMEM_LOG_LEVEL show the memory trace and retries on
stderr; CONVOMEM_LOG_FORMAT=json makes every line one JSON object; by default only warnings."""

from __future__ import annotations

import json

from tests.e2e.cli_support import Cli, assert_clean_error, assert_ok
from tests.fake_openai import FakeOpenAIServer

ALICE = "My name is Alice and I live in Paris."


def test_default_is_quiet_and_vv_shows_the_memory_trace_and_retries(
    cli: Cli, fake_model: FakeOpenAIServer
) -> None:
    quiet = assert_ok(cli.run("chat", "--thread", "q", "--user", "u", "-m", ALICE))
    assert quiet.stderr == ""
    fake_model.fail_next("respond", 1, status=503)
    loud = assert_ok(cli.run("-vv", "chat", "--thread", "q", "--user", "u", "-m", "Where do I live?"))
    assert "DEBUG convomem.memory: memory for u" in loud.stderr
    assert "Paris" in loud.stderr.split("memory for u", 1)[1], "the trace says what was picked"
    assert "DEBUG convomem.models: transient model error, retried" in loud.stderr
    assert "Noted" in loud.stdout, "the retry answered"


def test_json_lines_from_the_environment(cli: Cli) -> None:
    env = {"CONVOMEM_LOG_LEVEL": "debug", "CONVOMEM_LOG_FORMAT": "json"}
    result = assert_ok(cli.run("chat", "--thread", "j", "--user", "u", "-m", ALICE, env=env))
    records = [json.loads(line) for line in result.stderr.splitlines() if line.strip()]
    assert records, "debug records were written"
    assert {"time", "level", "logger", "message"} <= set(records[0])
    assert any(r["logger"] == "convomem.memory" and r["level"] == "debug" for r in records)


def test_a_bad_log_setting_is_one_line(cli: Cli) -> None:
    message = assert_clean_error(cli.run("threads", env={"CONVOMEM_LOG_LEVEL": "loud"}))
    assert "log_level" in message
