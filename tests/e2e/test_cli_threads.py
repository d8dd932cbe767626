"""The thread commands as a user runs them: list with filters, archive, delete, export and import (onto
another database, where the conversation continues), a new thread when chat gets none; bad input is one
error line."""

from __future__ import annotations

import json
from pathlib import Path

import psycopg

from checkpoint.locks import LOCK_NAMESPACE, thread_lock_key
from tests.e2e.cli_support import (
    Cli,
    assert_clean_error,
    assert_ok,
    cli_environment,
    fresh_database,
    thread_rows,
)
from tests.e2e.pty_support import Terminal
from tests.fake_openai import FakeOpenAIServer
from tests.integration.support import message_texts, rows, transcript_rows


def listed(cli: Cli, *args: str) -> list[dict[str, object]]:
    result = assert_ok(cli.run("threads", "--json", *args))
    return json.loads(result.stdout)  # type: ignore[no-any-return]


def test_threads_list_archive_and_delete(cli: Cli, database_url: str) -> None:
    assert_ok(cli.run("chat", "--thread", "a1", "--user", "alice", "-m", "Plan 100% of the garden_party"))
    assert_ok(cli.run("chat", "--thread", "b1", "--user", "bob", "-m", "Bread recipes"))

    everything = listed(cli)
    assert [t["thread_id"] for t in everything] == ["b1", "a1"]
    first = everything[1]
    assert {"thread_id", "checkpoints", "last_checkpoint_id", "updated_at"} <= set(first), "old fields stay"
    assert (first["user_id"], first["title"], first["status"], first["messages"]) == (
        "alice", "Plan 100% of the garden_party", "active", 2,
    )  # fmt: skip
    assert [t["thread_id"] for t in listed(cli, "--user", "bob")] == ["b1"]
    assert [t["thread_id"] for t in listed(cli, "--search", "GARDEN_P")] == ["a1"]
    assert listed(cli, "--search", "garden%party") == []
    table = assert_ok(cli.run("threads")).stdout
    assert "Plan 100% of the garden_party" in table and "alice" in table

    assert "archived" in assert_ok(cli.run("archive", "--thread", "a1")).stdout
    assert [t["thread_id"] for t in listed(cli)] == ["b1"]
    assert [t["thread_id"] for t in listed(cli, "--status", "archived")] == ["a1"]
    assert_ok(cli.run("archive", "--thread", "a1", "--undo"))
    assert len(listed(cli)) == 2

    assert (
        "transcript kept"
        in assert_ok(cli.run("delete", "--thread", "a1", "--keep-transcript", "--yes")).stdout
    )
    assert_ok(cli.run("delete", "--thread", "b1", "--with-transcript", "--yes"))
    assert listed(cli, "--status", "all") == []
    assert thread_rows(database_url, "b1").checkpoints == ()
    assert transcript_rows(database_url, "a1") == 2 and transcript_rows(database_url, "b1") == 0


def test_bad_thread_commands_are_one_error_line(cli: Cli, database_url: str, tmp_path: Path) -> None:
    assert_ok(cli.run("chat", "--thread", "t", "--user", "u", "-m", "hello"))
    cases = {
        ("archive", "--thread", "nope"): "No thread 'nope'",
        ("delete", "--thread", "nope", "--yes", "--with-transcript"): "No thread 'nope'",
        ("delete", "--thread", "t"): "needs --yes and --keep-transcript or --with-transcript",
        ("delete", "--thread", "t", "--yes"): "needs --yes and --keep-transcript or --with-transcript",
        ("delete", "--thread", "t", "--yes", "--keep-transcript", "--with-transcript"): "not both",
        ("export", "--thread", "nope"): "No thread 'nope'",
        ("export", "--thread", "bad id!"): "Invalid thread id",
        ("threads", "--status", "gone"): "Unknown thread status",
        ("import", str(tmp_path / "missing.json")): "Cannot read",
    }
    for args, expected in cases.items():
        line = assert_clean_error(cli.run(*args))
        assert expected in line, (args, line)
    assert thread_rows(database_url, "t").checkpoints, "nothing was deleted"

    bad = tmp_path / "bad.json"
    for content, expected in (
        ("{not json", "not JSON"),
        ('{"format": "convomem.thread", "version": 2}', "Invalid export file: version"),
        ('{"format": "other"}', "Invalid export file: format"),
    ):
        bad.write_text(content)
        line = assert_clean_error(cli.run("import", str(bad)))
        assert expected in line, line

    exported = tmp_path / "t.json"
    assert_ok(cli.run("export", "--thread", "t", "-o", str(exported)))
    line = assert_clean_error(cli.run("import", str(exported)))
    assert "Thread 't' already exists" in line, line


def test_delete_is_refused_while_a_run_holds_the_thread(cli: Cli, database_url: str) -> None:
    assert_ok(cli.run("chat", "--thread", "busy", "--user", "u", "-m", "hello"))
    with psycopg.connect(database_url, autocommit=True) as holder:
        holder.execute("SELECT pg_advisory_lock(%s, %s)", (LOCK_NAMESPACE, thread_lock_key("busy")))
        line = assert_clean_error(cli.run("delete", "--thread", "busy", "--yes", "--with-transcript"))
    assert "running a turn" in line, line
    assert thread_rows(database_url, "busy").checkpoints and transcript_rows(database_url, "busy") == 2


def test_export_import_on_another_database_and_the_conversation_continues(
    cli: Cli, fake_model: FakeOpenAIServer, postgres_root: tuple[Path, str], tmp_path: Path
) -> None:
    assert_ok(cli.run("chat", "--thread", "trip", "--user", "alice", "-m", "My sister lives in Lisbon"))
    exported = assert_ok(cli.run("export", "--thread", "trip")).stdout
    document = json.loads(exported)
    assert document["thread_id"] == "trip" and len(document["transcript"]) == 2
    file = tmp_path / "trip.json"
    file.write_text(exported)

    with fresh_database(postgres_root[1]) as other:
        elsewhere = Cli(env=cli_environment(other, fake_model.base_url, tmp_path / "other"), cwd=tmp_path)
        assert (
            "imported thread moved"
            in assert_ok(elsewhere.run("import", str(file), "--thread", "moved")).stdout
        )
        assert [t["thread_id"] for t in listed(elsewhere)] == ["moved"]
        fake_model.clear_requests()
        assert_ok(elsewhere.run("chat", "--thread", "moved", "-m", "where does she live?"))
        (respond,) = fake_model.requests_of("respond")
        assert message_texts(respond["messages"], "user") == [
            "My sister lives in Lisbon",
            "where does she live?",
        ]
        owner = rows(other, "SELECT user_id, message_count FROM convomem_threads WHERE thread_id = 'moved'")
        assert owner == [("alice", 4)], "the next turn acts for the thread's user and counts its messages"


def test_chat_without_a_thread_starts_a_new_one(cli: Cli, database_url: str) -> None:
    first = assert_ok(cli.run("chat", "--user", "u", "-m", "hello"))
    second = assert_ok(cli.run("chat", "--user", "u", "-m", "hello again"))
    ids = [line.split()[1] for line in (first.stderr, second.stderr) if line.startswith("thread ")]
    assert len(ids) == 2 and ids[0] != ids[1], (first.stderr, second.stderr)
    assert {t["thread_id"] for t in listed(cli)} == set(ids)
    assert "(new)" in first.stderr and first.stdout.strip(), "the reply stays on stdout"


def test_delete_at_a_terminal_asks_whether_the_transcript_goes(cli: Cli, database_url: str) -> None:
    for thread in ("kept", "dropped"):
        assert_ok(cli.run("chat", "--thread", thread, "--user", "u", "-m", "hello"))
    for thread, answer in (("kept", "n"), ("dropped", "y")):
        with Terminal(cli, "delete", "--thread", thread) as term:
            term.expect(rf"Delete thread {thread}\?")
            term.line("y")
            term.expect("transcript too")
            term.line(answer)
            assert term.wait() == 0
    assert (
        thread_rows(database_url, "kept").checkpoints
        == thread_rows(database_url, "dropped").checkpoints
        == ()
    )
    assert (transcript_rows(database_url, "kept"), transcript_rows(database_url, "dropped")) == (2, 0)
