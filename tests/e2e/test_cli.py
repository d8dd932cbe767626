"""The real `convomem` CLI in subprocesses: every command on a real database and the fake model over HTTP;
bad input refused with one `error:` line and no traceback, leaving every row as it was; the demo."""

from __future__ import annotations

import re
import subprocess
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import typer
from typer.core import TyperGroup

from graphs.cli import app
from graphs.conversation import NODES
from graphs.settings import Settings
from tests.e2e.cli_support import (
    CLI_TIMEOUT,
    Cli,
    CliResult,
    assert_clean_error,
    assert_ok,
    cli_environment,
    closed_port,
    entities,
    fresh_database,
    history,
    state,
    thread_rows,
)
from tests.fake_openai import FakeOpenAIServer
from tests.integration.support import rows

ALICE = "My name is Alice and I live in Paris."
FIRST = "I work at Acme with Zelda."
FORKED = "Actually I moved to Porto."
MAX_MESSAGE_BYTES = 32 * 1024


def humans(snapshot: Any) -> list[str]:
    return [m.text for m in snapshot.values["messages"] if m.type == "human"]


def ai_count(snapshot: Any) -> int:
    return sum(1 for m in snapshot.values["messages"] if m.type == "ai")


def table_cells(output: str) -> list[list[str]]:
    """The body rows of the Rich tables in `output`, as lists of stripped cell texts."""
    return [
        [cell.strip() for cell in line.strip().strip("│").split("│")]
        for line in output.splitlines()
        if line.startswith("│")
    ]


# ------------------------------------------------------------------------------------ chat and reads


def test_one_shot_chat_streams_persists_and_is_inspectable(
    cli: Cli, fake_model: FakeOpenAIServer, settings: Settings, database_url: str
) -> None:
    result = assert_ok(cli.run("chat", "--thread", "t", "--user", "u", "--message", ALICE))

    assert "Noted:" in result.stdout, "the reply streamed to stdout"
    assert result.stderr.strip() == ""
    snapshot = state(settings, "t")
    assert snapshot.next == ()
    assert humans(snapshot) == [ALICE]
    assert ai_count(snapshot) == 1
    checkpoints = thread_rows(database_url, "t").checkpoints
    assert len(checkpoints) >= 5
    respond = fake_model.requests_of("respond")
    assert len(respond) == 1
    assert len(fake_model.requests_of("extract")) == 1
    assert respond[0]["model"] == "fake-model", "CONVOMEM_MODEL reached the client"
    assert respond[0]["stream"] is True, "respond streams its tokens"
    assert [m["content"] for m in respond[0]["messages"] if m["role"] == "user"][-1] == ALICE

    listed = assert_ok(cli.run("threads"))
    assert [row[0] for row in table_cells(listed.stdout)] == ["t"]

    shown = assert_ok(cli.run("history", "--thread", "t"))
    cells = table_cells(shown.stdout)
    ids_shown = [row[0] for row in cells if row[0]]
    assert sorted(ids_shown) == sorted(checkpoints)
    for node in NODES:
        assert node in shown.stdout, f"history shows {node}"

    remembered = assert_ok(cli.run("entities", "--user", "u"))
    values = {row[1] for row in table_cells(remembered.stdout)}
    assert {"Alice", "Paris"} <= values
    records = {r.value: r for r in entities(settings, "u")}
    assert records["Alice"].type == "PERSON"
    assert records["Paris"].type == "LOC"
    assert all(r.mentions == 1 for r in records.values())

    nobody = assert_ok(cli.run("entities", "--user", "someone-else"))
    assert "Alice" not in nobody.stdout


def test_message_from_stdin(cli: Cli, settings: Settings) -> None:
    text = "Line one.\nZoë lives in Köln 🙂 — and “quotes”."
    result = assert_ok(cli.run("chat", "--thread", "s", "--user", "u", "--message", "-", input=text))

    assert "Noted:" in result.stdout
    assert humans(state(settings, "s")) == [text], "stdin reached the thread byte for byte"


def test_interactive_session_over_a_pipe(cli: Cli, fake_model: FakeOpenAIServer, settings: Settings) -> None:
    """Without --message: one turn per line, blank lines skipped, /quit leaves."""
    lines = "I work at Acme.\n\n   \nWhat do you remember?\n/quit\nnever sent\n"
    assert_ok(cli.run("chat", "--thread", "i", "--user", "u", input=lines))

    assert humans(state(settings, "i")) == ["I work at Acme.", "What do you remember?"]
    assert len(fake_model.requests_of("respond")) == 2


def test_replay_and_fork_add_checkpoints(
    cli: Cli, fake_model: FakeOpenAIServer, settings: Settings, database_url: str
) -> None:
    assert_ok(cli.run("chat", "--thread", "t", "--user", "u", "--message", FIRST))
    first_turn = history(settings, "t")
    turn_end = first_turn[0]
    before_respond = next(c for c in first_turn if c.next_nodes == ("respond",))
    before = set(thread_rows(database_url, "t").checkpoints)

    assert_ok(cli.run("replay", "--thread", "t", "--checkpoint", before_respond.checkpoint_id))

    after_replay = set(thread_rows(database_url, "t").checkpoints)
    assert before < after_replay, "replay adds a branch and keeps the old checkpoints"
    assert len(fake_model.requests_of("respond")) == 2, "respond ran again"
    snapshot = state(settings, "t")
    assert snapshot.next == ()
    assert humans(snapshot) == [FIRST]
    assert ai_count(snapshot) == 1

    assert_ok(cli.run("fork", "--thread", "t", "--checkpoint", turn_end.checkpoint_id, "--message", FORKED))

    assert after_replay < set(thread_rows(database_url, "t").checkpoints)
    snapshot = state(settings, "t")
    assert snapshot.next == ()
    assert humans(snapshot) == [FIRST, FORKED]
    assert ai_count(snapshot) == 2
    assert len(fake_model.requests_of("respond")) == 3
    assert {r.value for r in entities(settings, "u")} >= {"Acme", "Zelda", "Porto"}, "fork kept the user"


def test_breakpoint_then_resume(cli: Cli, fake_model: FakeOpenAIServer, settings: Settings) -> None:
    assert_ok(cli.run("chat", "-t", "b", "-u", "u", "-m", ALICE, "--interrupt-before", "respond"))

    paused = state(settings, "b")
    assert paused.next == ("respond",)
    assert fake_model.requests == [], "paused before the first model call"

    assert_ok(cli.run("resume", "--thread", "b"))

    assert state(settings, "b").next == ()
    assert len(fake_model.requests_of("respond")) == 1
    assert {r.value for r in entities(settings, "u")} == {"Alice", "Paris"}, "resume kept the user"


@pytest.mark.parametrize("durability", ["async", "exit"])
def test_chat_with_another_durability(cli: Cli, settings: Settings, durability: str) -> None:
    assert_ok(cli.run("chat", "-t", "d", "-u", "u", "-m", ALICE, "--durability", durability))

    snapshot = state(settings, "d")
    assert snapshot.next == ()
    assert humans(snapshot) == [ALICE]
    assert ai_count(snapshot) == 1


@pytest.mark.parametrize(
    ("answer", "kept"),
    [
        ("reject", set()),
        ("approve", {"Alice", "Paris"}),
        ('[{"type": "PERSON", "value": "Alice", "context": "the user"}]', {"Alice"}),
    ],
    ids=["reject", "approve", "edited-list"],
)
def test_review_then_resume(
    cli: Cli, fake_model: FakeOpenAIServer, settings: Settings, answer: str, kept: set[str]
) -> None:
    review = assert_ok(cli.run("chat", "--thread", "r", "--user", "u", "--review", "--message", ALICE))

    assert "Noted:" in review.stdout
    proposed = {row[2] for row in table_cells(review.stdout)}
    assert {"Alice", "Paris"} <= proposed, "the review table lists what would be remembered"
    pending = state(settings, "r")
    assert pending.interrupts, "one-shot chat leaves the review pending when stdin is not a terminal"
    assert pending.next == ("extract_entities",)
    assert entities(settings, "u") == [], "nothing stored before the answer"

    assert_ok(cli.run("resume", "--thread", "r", "--value", answer))

    done = state(settings, "r")
    assert done.next == ()
    assert not done.interrupts
    assert {r.value for r in entities(settings, "u")} == kept
    assert all(r.mentions == 1 for r in entities(settings, "u"))
    assert len(fake_model.requests_of("extract")) == 1, "the resumed review reuses the proposal"
    assert len(fake_model.requests_of("respond")) == 1


def test_db_setup_status_and_stop(cli: Cli, database_url: str) -> None:
    def tables() -> set[str]:
        found = rows(database_url, "SELECT tablename FROM pg_tables WHERE schemaname = current_schema()")
        return {row[0] for row in found}

    assert tables() == set()
    assert_ok(cli.run("db", "setup"))
    created = tables()
    assert {"checkpoints", "checkpoint_writes", "checkpoint_blobs", "store"} <= created
    assert_ok(cli.run("db", "setup"))
    assert tables() == created, "setup is idempotent"

    status = assert_ok(cli.run("db", "status"))
    listed = {row[0] for row in table_cells(status.stdout)}
    assert "checkpoints" in listed
    assert created <= listed

    assert_ok(cli.run("db", "stop"))
    assert tables() == created, "db stop leaves a DATABASE_URL server alone"


COMMANDS = [
    (),
    ("chat",),
    ("resume",),
    ("pending",),
    ("threads",),
    ("history",),
    ("replay",),
    ("fork",),
    ("archive",),
    ("delete",),
    ("export",),
    ("import",),
    ("entities",),
    ("entity",),
    ("remember",),
    ("edit-entity",),
    ("profile",),
    ("fact",),
    ("search",),
    ("transcript",),
    ("stats",),
    ("forget",),
    ("demo",),
    ("assistants",),
    ("assistants", "list"),
    ("assistants", "show"),
    ("assistants", "check"),
    ("ops",),
    ("health",),
    ("db",),
    ("db", "setup"),
    ("db", "status"),
    ("db", "stop"),
    ("db", "prune"),
    ("db", "compact"),
    ("model",),
    ("model", "status"),
    ("model", "stop"),
]


def command_paths(group: TyperGroup, prefix: tuple[str, ...] = ()) -> set[tuple[str, ...]]:
    paths = {prefix}
    for name, command in group.commands.items():
        if isinstance(command, TyperGroup):
            paths |= command_paths(command, (*prefix, name))
        else:
            paths.add((*prefix, name))
    return paths


def test_every_command_has_its_help_checked() -> None:
    root = typer.main.get_command(app)
    assert isinstance(root, TyperGroup)
    assert command_paths(root) == set(COMMANDS)


def test_help_of_every_command(cli: Cli) -> None:
    children = [
        (command, subprocess.Popen(
            [*cli.command, *command, "--help"], stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
            stderr=subprocess.PIPE, env=cli.env, cwd=cli.cwd,
        ))
        for command in COMMANDS
    ]  # fmt: skip
    for command, child in children:
        try:
            out, err = child.communicate(timeout=CLI_TIMEOUT)
        finally:
            if child.poll() is None:
                child.kill()
                child.wait()
        name = " ".join(command) or "convomem"
        assert child.returncode == 0, f"{name} --help: exit {child.returncode}\n{err.decode()}"
        assert b"Usage:" in out, name
        assert err == b"", name


# ---------------------------------------------------------------------------------------- bad input


@dataclass(frozen=True)
class Seeded:
    """A database with a finished turn on thread "t" and a pending memory review on thread "review"."""

    cli: Cli
    url: str
    fake: FakeOpenAIServer
    review_checkpoint: str


@pytest.fixture(scope="module")
def seeded(postgres_root: tuple[Path, str], tmp_path_factory: pytest.TempPathFactory) -> Iterator[Seeded]:
    _, root_url = postgres_root
    workdir = tmp_path_factory.mktemp("seeded")
    with FakeOpenAIServer() as fake, fresh_database(root_url) as url:
        cli = Cli(env=cli_environment(url, fake.base_url, workdir / "data"), cwd=workdir)
        assert_ok(cli.run("chat", "--thread", "t", "--user", "u", "--message", FIRST))
        assert_ok(cli.run("chat", "--thread", "review", "--user", "u", "--review", "--message", ALICE))
        yield Seeded(cli, url, fake, thread_rows(url, "review").checkpoints[-1])


def everything(url: str) -> tuple[list[tuple[Any, ...]], ...]:
    """Every checkpoint, pending write and store row (not blobs: a failed run may leave unreachable ones)."""
    writes = (
        "SELECT thread_id, checkpoint_id, task_id, idx, channel FROM checkpoint_writes ORDER BY 1, 2, 3, 4"
    )
    return (
        rows(url, "SELECT thread_id, checkpoint_ns, checkpoint_id FROM checkpoints ORDER BY 1, 2, 3"),
        rows(url, writes),
        rows(url, "SELECT prefix, key, value::text, updated_at FROM store ORDER BY 1, 2"),
    )


def refused(
    seeded: Seeded, *args: str | bytes, input: str | bytes | None = None, env: dict[str, str] | None = None
) -> CliResult:
    """Run a command that must be refused: one clean error line, no row changed, no model request."""
    before = everything(seeded.url)
    requests = len(seeded.fake.requests)
    result = seeded.cli.run(*args, input=input, env=env)
    assert_clean_error(result)
    assert everything(seeded.url) == before, f"rows changed\n{result.describe()}"
    assert len(seeded.fake.requests) == requests, "the model was asked"
    return result


def test_seeded_threads_are_as_expected(seeded: Seeded) -> None:
    assert thread_rows(seeded.url, "t").checkpoints
    assert thread_rows(seeded.url, "review").writes, "the review waits on a pending interrupt"


TOO_LONG = "x" * (MAX_MESSAGE_BYTES + 1)
TOO_MANY_BYTES = "é" * (MAX_MESSAGE_BYTES // 2 + 1)  # under the limit in characters, over it in bytes

BAD_CHAT_INPUT = [
    pytest.param(("--message", ""), None, id="empty"),
    pytest.param(("--message", " \t \n "), None, id="whitespace"),
    pytest.param(("--message", "-"), " \n\n", id="whitespace-stdin"),
    pytest.param(("--message", TOO_LONG), None, id="over-32KiB"),
    pytest.param(("--message", "-"), TOO_MANY_BYTES, id="over-32KiB-in-bytes-stdin"),
    pytest.param(("--message", b"\xff\xfe"), None, id="invalid-utf8-argv"),
    pytest.param(("--message", "-"), "a\x00b", id="nul-stdin"),
]


@pytest.mark.parametrize(("args", "stdin"), BAD_CHAT_INPUT)
def test_bad_message_is_refused(seeded: Seeded, args: tuple[str | bytes, ...], stdin: str | None) -> None:
    refused(seeded, "chat", "--thread", "t", "--user", "u", *args, input=stdin)


def test_invalid_utf8_on_stdin_is_refused(seeded: Seeded) -> None:
    refused(seeded, "chat", "--thread", "t", "--user", "u", "--message", "-", input=b"\xff\xfe")


@pytest.mark.parametrize(
    "args",
    [
        pytest.param(
            ("chat", "--thread", "a" * 200, "--user", "u", "--message", "hi"), id="thread-200-chars"
        ),
        pytest.param(("chat", "--thread", "a b", "--user", "u", "--message", "hi"), id="thread-with-space"),
        pytest.param(("chat", "--thread", "t", "--user", "x;DROP", "--message", "hi"), id="user-sql"),
        pytest.param(("history", "--thread", "a b"), id="history-bad-thread"),
        pytest.param(("entities", "--user", "x;DROP"), id="entities-bad-user"),
        pytest.param(("resume", "--thread", "../t"), id="resume-bad-thread"),
        pytest.param(("search", "hi", "--user", "x;DROP"), id="search-bad-user"),
        pytest.param(("search", "hi", "--thread", "a b"), id="search-bad-thread"),
        pytest.param(("transcript", "--thread", "a b"), id="transcript-bad-thread"),
        pytest.param(("stats", "--user", "x;DROP"), id="stats-bad-user"),
        pytest.param(("forget", "--user", "x;DROP", "--yes"), id="forget-bad-user"),
    ],
)
def test_bad_ids_are_refused(seeded: Seeded, args: tuple[str, ...]) -> None:
    line = refused(seeded, *args).stderr
    assert "id" in line


@pytest.mark.parametrize("command", ["replay", "fork"])
@pytest.mark.parametrize(
    "checkpoint",
    ["1f000000-0000-6000-8000-000000000000", "not-a-checkpoint", "REVIEW"],
    ids=["unknown", "malformed", "other-threads"],
)
def test_unknown_checkpoint_is_refused(seeded: Seeded, command: str, checkpoint: str) -> None:
    checkpoint = seeded.review_checkpoint if checkpoint == "REVIEW" else checkpoint
    extra = ("--message", "hello") if command == "fork" else ()
    refused(seeded, command, "--thread", "t", "--checkpoint", checkpoint, *extra)


def test_resume_without_pending_work_is_refused(seeded: Seeded) -> None:
    refused(seeded, "resume", "--thread", "t")
    refused(seeded, "resume", "--thread", "never-used")


def test_chat_on_a_thread_waiting_for_review_is_refused(seeded: Seeded) -> None:
    refused(seeded, "chat", "--thread", "review", "--user", "u", "--message", "hi")


@pytest.mark.parametrize(
    "value",
    ["maybe", '[{"type": "PERSON"}]', '{"entities": 5}', "42"],
    ids=["word", "no-value", "not-list", "number"],
)
def test_invalid_review_answer_is_refused(seeded: Seeded, value: str) -> None:
    refused(seeded, "resume", "--thread", "review", "--value", value)


def test_unparseable_review_answer_is_refused(seeded: Seeded) -> None:
    refused(seeded, "resume", "--thread", "review", "--value", "not json {")


def test_unknown_breakpoint_node_is_refused(seeded: Seeded) -> None:
    refused(
        seeded, "chat", "--thread", "t", "--user", "u", "--message", "hi", "--interrupt-before", "nosuchnode"
    )


def test_unknown_durability_is_refused(seeded: Seeded) -> None:
    refused(seeded, "chat", "--thread", "t", "--user", "u", "--message", "hi", "--durability", "never")


def test_unreachable_database_is_reported(seeded: Seeded) -> None:
    result = refused(
        seeded, "chat", "--thread", "t", "--user", "u", "--message", "hi",
        env={"DATABASE_URL": "postgresql://u:p@127.0.0.1:1/x"},
    )  # fmt: skip
    assert "127.0.0.1:1" in result.stderr
    assert "u:p" not in result.stderr, "no credentials in the error"


def test_model_server_down_leaves_the_thread_untouched(seeded: Seeded) -> None:
    down = f"http://127.0.0.1:{closed_port()}/v1"
    refused(seeded, "chat", "--thread", "t", "--user", "u", "--message", "hi", env={"OPENAI_BASE_URL": down})
    once = {"OPENAI_BASE_URL": down, "CONVOMEM_MODEL_RETRIES": "1"}
    refused(seeded, "chat", "--thread", "new", "--user", "u", "--message", "hi", env=once)


def test_error_stays_on_one_line_in_a_narrow_pipe(seeded: Seeded) -> None:
    refused(seeded, "chat", "--thread", "a b", "--user", "u", "--message", "hi", env={"COLUMNS": "80"})


@pytest.mark.parametrize(
    ("args", "env"),
    [
        pytest.param(("search", ""), None, id="search-empty"),
        pytest.param(("search", "  "), None, id="search-blank"),
        pytest.param(("forget",), None, id="forget-whom"),
        pytest.param(("search", "hi"), {"CONVOMEM_TRANSCRIPT_LANGUAGE": "klingon"}, id="unknown-language"),
        pytest.param(("stats",), {"CONVOMEM_TRANSCRIPT_LANGUAGE": "x;y"}, id="malformed-language"),
    ],
)
def test_bad_transcript_requests_are_refused(
    seeded: Seeded, args: tuple[str, ...], env: dict[str, str] | None
) -> None:
    line = refused(seeded, *args, env=env).stderr
    if env:
        assert "CONVOMEM_TRANSCRIPT_LANGUAGE" in line or "transcript_language" in line


# ------------------------------------------------------------------------------------------ transcript

PENGUINS = "I watched penguins at the zoo in Berlin."
TRANSCRIPT_TURNS = [
    PENGUINS,
    "My sister Clara studies seals.",
    "We plan a trip to Oslo in May.",
    "Clara found a penguin feather.",
    "What should we pack?",
]


def test_transcript_search_stats_and_forget(cli: Cli, settings: Settings, database_url: str) -> None:
    folding = {"CONVOMEM_WORKING_SET_TOKENS": "64"}
    assert_ok(cli.run("chat", "-t", "t", "-u", "u", input="\n".join(TRANSCRIPT_TURNS) + "\n", env=folding))
    assert_ok(cli.run("chat", "-t", "other", "-u", "v", "-m", "A penguin stole my sandwich in Rome."))
    working_set = len(state(settings, "t").values["messages"])
    assert working_set < 2 * len(TRANSCRIPT_TURNS), "history folded"

    shown = assert_ok(cli.run("transcript", "--thread", "t")).stdout
    positions = [shown.index(text) for text in TRANSCRIPT_TURNS]
    assert positions == sorted(positions), "the whole conversation, oldest first"
    assert shown.count("Noted:") == len(TRANSCRIPT_TURNS)
    folded = 2 * len(TRANSCRIPT_TURNS) - working_set
    assert f"{2 * len(TRANSCRIPT_TURNS)} messages: {folded} folded into the summary" in shown

    found = table_cells(assert_ok(cli.run("search", "penguin")).stdout)
    assert {row[0] for row in found} == {"t", "other"}
    assert {row[2] for row in found} == {"human", "ai"}
    assert all("penguin" in row[3].lower() for row in found)
    assert len(found) == 6, "three messages and their echoes"
    only_u = table_cells(assert_ok(cli.run("search", "penguin", "--user", "u", "--limit", "1")).stdout)
    assert [row[0] for row in only_u] == ["t"]
    in_other = table_cells(assert_ok(cli.run("search", "penguin", "--thread", "other")).stdout)
    assert {row[0] for row in in_other} == {"other"}
    hostile = assert_ok(cli.run("search", "'; drop table convomem_transcript; --"))
    assert "no matching messages" in hostile.stdout

    stats = dict(row[:2] for row in table_cells(assert_ok(cli.run("stats", "--user", "u")).stdout))
    assert stats["conversations"] == "1"
    assert stats["messages"] == str(2 * len(TRANSCRIPT_TURNS))
    assert int(stats["entities remembered"]) >= 3  # Berlin, Clara, Oslo

    for answer in ("n\n", None):  # declined, or no one to answer: exit 1 so a script sees it
        declined = cli.run("forget", "--user", "u", input=answer)
        assert declined.returncode == 1, declined.describe()
        assert "10 messages" in declined.stdout and "nothing deleted" in declined.stdout
    assert rows(database_url, "SELECT count(*) FROM convomem_transcript WHERE user_id = 'u'") == [(10,)]

    forgot = assert_ok(cli.run("forget", "--user", "u", "--yes")).stdout
    assert "forgot user 'u': 10 transcript messages" in forgot
    assert "1 threads (t)" in forgot
    assert rows(database_url, "SELECT DISTINCT user_id FROM convomem_transcript") == [("v",)]
    assert thread_rows(database_url, "t").checkpoints == ()
    assert thread_rows(database_url, "other").checkpoints
    assert entities(settings, "u") == []
    assert entities(settings, "v")
    assert "No thread 't'" in assert_clean_error(cli.run("transcript", "--thread", "t")), "forgotten for good"


# --------------------------------------------------------------------------------------------- demo


@pytest.mark.slow
@pytest.mark.timeout(180)
def test_demo_runs_its_five_steps(cli: Cli) -> None:
    result = assert_ok(cli.run("demo", timeout=150))
    for step in ("1/5", "2/5", "3/5", "4/5", "5/5"):
        assert re.search(rf"^\s*{step}\b", result.stdout, re.MULTILINE), f"demo step {step}"
    crash = result.stdout[result.stdout.index("3/5") : result.stdout.index("4/5")]
    # the killed child's partial reply is relayed before the kill is reported, then the resumed one's
    assert re.search(r"^│ assistant> \S.*\n.*killed mid-reply", crash, re.MULTILINE), crash
    tools = result.stdout[result.stdout.index("5/5") :]
    assert "⚙ search_conversations" in tools, "the tool call is shown"
    assert "half past six on Tuesday" in tools, "recall and the tool found the other conversation's words"
    assert "Ask me about anything you told me before" in tools, "the recall assistant's first message"
