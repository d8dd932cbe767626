"""The CLI as a script uses it: --json on every listing command, full checkpoint ids and unique prefixes,
unknown threads and bad database URLs as one error line, and validation before Postgres starts."""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from psycopg.conninfo import conninfo_to_dict, make_conninfo

from nodes.model_server import STATE_FILE
from tests.e2e.cli_support import (
    Cli,
    assert_clean_error,
    assert_ok,
    cli_environment,
    fresh_database,
    thread_rows,
)
from tests.fake_openai import FakeOpenAIServer
from tests.integration.support import rows

ALICE = "My name is Alice and I live in Paris."


@dataclass(frozen=True)
class Chatted:
    """A database where user "u" finished one turn on thread "t", and the CLI on it."""

    cli: Cli
    url: str


@pytest.fixture(scope="module")
def chatted(postgres_root: tuple[Path, str], tmp_path_factory: pytest.TempPathFactory) -> Iterator[Chatted]:
    here = tmp_path_factory.mktemp("scripting")
    with FakeOpenAIServer() as fake, fresh_database(postgres_root[1]) as url:
        found = Chatted(Cli(env=cli_environment(url, fake.base_url, here / "data"), cwd=here), url)
        assert_ok(found.cli.run("chat", "--thread", "t", "--user", "u", "--message", ALICE))
        yield found


def json_of(cli: Cli, *args: str) -> Any:
    """Run with --json: exit 0, nothing on stderr, and stdout is exactly one JSON document."""
    result = assert_ok(cli.run(*args, "--json"))
    assert result.stderr == "", result.describe()
    return json.loads(result.stdout)


def test_every_listing_command_prints_json(chatted: Chatted) -> None:
    cli = chatted.cli
    threads = json_of(cli, "threads")
    assert [t["thread_id"] for t in threads] == ["t"]
    assert threads[0]["checkpoints"] == len(thread_rows(chatted.url, "t").checkpoints)

    history = json_of(cli, "history", "--thread", "t", "--limit", "1000")
    assert sorted(c["checkpoint_id"] for c in history) == sorted(thread_rows(chatted.url, "t").checkpoints)
    assert {"step", "created_at", "ran", "next_nodes", "messages"} <= set(history[0])

    entities = json_of(cli, "entities", "--user", "u")
    assert {"Alice", "Paris"} <= {e["value"] for e in entities}
    entity = json_of(cli, "entity", "Alice", "--user", "u")
    assert entity["record"]["value"] == "Alice"
    assert [m["content"] for m in entity["mentions"]] == [ALICE]
    assert json_of(cli, "profile", "--user", "nobody") is None
    assert isinstance(json_of(cli, "profile", "--user", "u"), dict | None)

    hits = json_of(cli, "search", "Paris")
    assert {h["thread_id"] for h in hits} == {"t"}
    transcript = json_of(cli, "transcript", "--thread", "t")
    assert transcript["thread_id"] == "t"
    assert [m["role"] for m in transcript["messages"]] == ["human", "ai"]
    assert transcript["messages"][0]["content"] == ALICE
    assert transcript["messages"][0]["folded"] is False
    stats = json_of(cli, "stats", "--user", "u")
    assert (stats["conversations"], stats["messages"]) == (1, 2)

    status = json_of(cli, "db", "status")
    counts = {table["name"]: table["rows"] for table in status["tables"]}
    assert counts["checkpoints"] == rows(chatted.url, "SELECT count(*) FROM checkpoints")[0][0] > 0
    assert counts["convomem_transcript"] == 2


def test_history_shows_whole_ids_even_at_80_columns(chatted: Chatted) -> None:
    shown = assert_ok(chatted.cli.run("history", "--thread", "t", "--limit", "1000", env={"COLUMNS": "80"}))
    for checkpoint_id in thread_rows(chatted.url, "t").checkpoints:
        assert checkpoint_id in shown.stdout
    assert not re.search(r"[0-9a-f]{8}-[0-9a-f-]{0,27}…", shown.stdout), "no id is cut short"


def test_replay_and_fork_take_a_unique_prefix(chatted: Chatted, tmp_path: Path) -> None:
    cli, url = chatted.cli, chatted.url
    ids = thread_rows(url, "t").checkpoints
    target = ids[len(ids) // 2]
    prefix = next(target[:n] for n in range(4, 37) if sum(i.startswith(target[:n]) for i in ids) == 1)

    assert_ok(cli.run("replay", "--thread", "t", "--checkpoint", prefix))
    after_replay = thread_rows(url, "t").checkpoints
    assert len(after_replay) > len(ids)
    assert_ok(cli.run("fork", "--thread", "t", "--checkpoint", prefix, "--message", "Hi again"))
    assert len(thread_rows(url, "t").checkpoints) > len(after_replay)

    before = thread_rows(url, "t")
    ambiguous = assert_clean_error(cli.run("replay", "--thread", "t", "--checkpoint", ids[0][:2]))
    assert "several" in ambiguous and "more characters" in ambiguous
    unknown = assert_clean_error(cli.run("fork", "--thread", "t", "--checkpoint", "%", "-m", "x"))
    assert "No checkpoint" in unknown and "convomem history" in unknown
    assert thread_rows(url, "t") == before, "a refused prefix changed nothing"


@pytest.mark.parametrize(
    "args",
    [
        ("history", "--thread", "never-used"),
        ("transcript", "--thread", "never-used"),
        ("replay", "--thread", "never-used", "--checkpoint", "1f"),
        ("fork", "--thread", "never-used", "--checkpoint", "1f", "--message", "hi"),
        ("history", "--thread", "never-used", "--json"),
        ("resume", "--thread", "never-used"),
        ("resume", "--thread", "never-used", "--value", "approve"),
        ("pending", "--thread", "never-used"),
        ("pending", "--thread", "never-used", "--json"),
    ],
    ids=[
        "history",
        "transcript",
        "replay",
        "fork",
        "history-json",
        "resume",
        "resume-value",
        "pending",
        "pending-json",
    ],
)
def test_an_unknown_thread_is_an_error(chatted: Chatted, args: tuple[str, ...]) -> None:
    result = chatted.cli.run(*args)
    assert "No thread 'never-used'" in assert_clean_error(result)
    assert result.stdout == ""
    assert rows(chatted.url, "SELECT count(*) FROM checkpoints WHERE thread_id = 'never-used'") == [(0,)]


def with_part(url: str, **changes: str) -> str:
    return make_conninfo(**{**conninfo_to_dict(url), **changes})  # type: ignore[arg-type]


def test_each_bad_database_url_has_its_own_message(chatted: Chatted) -> None:
    url = chatted.url
    cases = {
        "notaurl": "DATABASE_URL is not a Postgres connection URL",
        with_part(url, user="nobody_here"): "has no role 'nobody_here'",
        with_part(url, dbname="no_such_db"): "has no database 'no_such_db'",
        with_part(url, host="127.0.0.1", port="1"): "Cannot reach Postgres at 127.0.0.1:1",
    }
    for database_url, expected in cases.items():
        for command in (("threads",), ("entities", "--user", "u")):
            line = assert_clean_error(chatted.cli.run(*command, env={"DATABASE_URL": database_url}))
            assert expected in line, line


def test_a_validation_error_starts_no_postgres(tmp_path: Path, fake_model: FakeOpenAIServer) -> None:
    """Without DATABASE_URL a command would start the embedded server: a bad argument must not."""
    env = cli_environment("unused", fake_model.base_url, tmp_path / "data")
    del env["DATABASE_URL"]
    cli = Cli(env=env, cwd=tmp_path)
    for args in (
        ("history", "--thread", "bad id!"),
        ("transcript", "--thread", "x" * 300),
        ("replay", "--thread", "bad id!", "--checkpoint", "1f"),
        ("search", "x", "--limit", "5000"),
    ):
        assert_clean_error(cli.run(*args))
    assert not (tmp_path / "data" / "pgdata").exists(), "the embedded server was not started"


@pytest.mark.parametrize(
    "args",
    [
        ("history", "--thread", "t"),
        ("transcript", "--thread", "t"),
        ("pending", "--thread", "t"),
        ("threads",),
    ],
    ids=["history", "transcript", "pending", "threads"],
)
def test_commands_that_read_threads_start_no_model(chatted: Chatted, args: tuple[str, ...]) -> None:
    """With no model configured, the embedded one would be started (or, not installed, refused): reading
    a thread does neither."""
    local = {key: value for key, value in chatted.cli.env.items() if not key.startswith("OPENAI_")}
    cli = Cli(env=local, cwd=chatted.cli.cwd)
    assert_ok(cli.run(*args))
    assert not (Path(local["CONVOMEM_DATA_DIR"]) / STATE_FILE).exists(), "a model server was started"
