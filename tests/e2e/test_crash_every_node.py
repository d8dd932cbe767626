"""A `convomem chat` process SIGKILLed inside the two nodes that make no model call, load_memory and
reduce_history, then finished by `convomem resume` in a new process (test_crash_resume.py covers respond,
extract_entities and summarize, which block in the fake model).

These nodes are stopped where they meet Postgres instead: an admin transaction holds a table lock the
child's next statement needs, the test waits until the child's server session is queued on that lock
(pg_stat_activity), SIGKILLs the child, and only releases the lock once the dead client's sessions are
gone. The child runs with `client_connection_check_interval`, so its blocked statement is cancelled when
Postgres notices the client is dead, not executed (and committed) after the release: nothing the killed
process had in flight reaches the database.

The saver runs its operations concurrently, each on its own pooled connection (ConvomemSaver drops
upstream's saver-wide lock on a pool), so one blocked statement holds back nothing else of the process:
a moment is set by locking every table whose writes must not land, and by waiting until each statement
that must not run is seen queued.
"""

from __future__ import annotations

import os
import signal
import subprocess
from collections import Counter
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from itertools import pairwise
from pathlib import Path
from typing import Any

import psycopg
import pytest
from langchain_core.messages import AnyMessage

from graphs.settings import Settings
from tests.e2e.cli_support import (
    Cli,
    assert_ok,
    history,
    other_backends,
    session_processes,
    state,
    wait_until,
)
from tests.e2e.test_crash_resume import (
    PRIOR,
    SMALL_WORKING_SET,
    TEXT,
    THREAD,
    USER,
    assert_each_node_ran_once_per_turn,
    assert_entities_counted_once,
    assert_turn_completed_once,
    request_counts,
    resume_in_new_process,
)
from tests.fake_openai import FakeOpenAIServer
from tests.integration.support import assert_linear_history, orphan_writes, rows, system_prompt

pytestmark = [pytest.mark.slow, pytest.mark.timeout(180)]

DEAD_CLIENT_CHECK = {"PGOPTIONS": "-c client_connection_check_interval=100ms"}
"""Postgres polls the client socket while a statement runs (or waits for a lock), and aborts the
statement once the client is gone; without it a statement the dead child left queued would run after
the lock is released."""
WAIT = 30.0
MODEL_HOLD_SECONDS = 4.0
"""How long the step of extract_entities and summarize waits in the fake model: the window in which the
test takes its table locks, a few polls after the requests arrived (the delay cannot be cut short)."""
CONTROL_THREAD = "control"
CONTROL_USER = "u-control"


# ----------------------------------------------------------------------------------------- helpers


class TableLock:
    """`LOCK TABLE` held by an admin session in an open transaction until `release()` (or the block's end);
    `pid` is that session's server pid, which every probe for the child's sessions leaves out. `tables`
    is one name or several, comma-separated (locked together, in that order)."""

    def __init__(self, url: str, tables: str, mode: str) -> None:
        self.url = url
        self.conn = psycopg.connect(url)  # not autocommit: the lock lives until the rollback
        self.conn.execute(f"LOCK TABLE {tables} IN {mode} MODE")
        self.pid = self.conn.info.backend_pid

    def release(self) -> None:
        """Roll back and disconnect, then wait until the server session has ended (it exits after the
        client hung up, not with it), so the checks for leftover sessions see only the child's."""
        if not self.conn.closed:
            self.conn.rollback()
            self.conn.close()
            wait_until(
                lambda: not rows(self.url, "SELECT 1 FROM pg_stat_activity WHERE pid = %s", (self.pid,)),
                timeout=10,
                what=f"the admin session {self.pid} ended",
            )

    def __enter__(self) -> TableLock:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.release()


@contextmanager
def reaped(child: subprocess.Popen[bytes]) -> Iterator[subprocess.Popen[bytes]]:
    """The child, SIGKILLed at the block's end if a failed wait left it running."""
    try:
        yield child
    finally:
        if child.poll() is None:
            child.kill()
            child.wait(timeout=10)


def waiting_statements(url: str, admins: list[int]) -> list[str]:
    """Statements of the child's sessions queued on a heavyweight lock (a table lock held by an admin)."""
    found = rows(
        url,
        "SELECT query FROM pg_stat_activity WHERE datname = current_database() AND pid <> pg_backend_pid() "
        "AND NOT (pid = ANY(%s)) AND wait_event_type = 'Lock'",
        (admins,),
    )
    return [" ".join(str(row[0]).split()) for row in found]


def waits_on(url: str, admins: list[int], prefix: str | tuple[str, ...]) -> bool:
    statements = [" ".join(query.split()).upper() for query in waiting_statements(url, admins)]
    return any(statement.startswith(prefix) for statement in statements)


CHECKPOINT_SAVE = ("INSERT INTO CHECKPOINT_BLOBS", "INSERT INTO CHECKPOINTS")
"""The statements of a checkpoint's save, blobs first (upstream's aput), whichever of them is held."""
WRITES_SAVE = "INSERT INTO CHECKPOINT_WRITES"
ARCHIVE = "WITH INSERTED AS ( INSERT INTO CONVOMEM_TRANSCRIPT"
"""The transcript archive, which upserts the thread's row in the same statement (checkpoint.transcript)."""


def child_backends(url: str, admins: list[int]) -> list[tuple[Any, ...]]:
    return [row for row in other_backends(url) if row[0] not in admins]


def start_chat(cli: Cli, tmp_path: Path, *options: str, env: dict[str, str]) -> subprocess.Popen[bytes]:
    return cli.start(
        "chat", "--thread", THREAD, "--user", USER, "--message", TEXT, *options,
        stdout=tmp_path / "child.out", stderr=tmp_path / "child.err", env={**env, **DEAD_CLIENT_CHECK},
    )  # fmt: skip


def kill_when_blocked(
    child: subprocess.Popen[bytes], url: str, admins: list[int], blocked: Callable[[], bool], what: str
) -> None:
    """Wait for `blocked()`, SIGKILL the child, and wait until neither a process of its session nor one
    of its Postgres sessions is left (while the admin locks are still held)."""
    wait_until(blocked, timeout=WAIT, what=what, alive=child)
    os.kill(child.pid, signal.SIGKILL)
    child.wait(timeout=10)
    assert child.returncode == -signal.SIGKILL
    wait_until(
        lambda: not session_processes(child.pid),
        timeout=10,
        what=f"no process left in the killed child's session: {session_processes(child.pid)}",
    )
    wait_until(
        lambda: not child_backends(url, admins),
        timeout=10,
        what=f"the killed child's Postgres sessions gone: {child_backends(url, admins)}",
    )


def newest_step(url: str, thread_id: str) -> int:
    [(step,)] = rows(
        url,
        "SELECT max((metadata ->> 'step')::int) FROM checkpoints WHERE thread_id = %s AND checkpoint_ns = ''",
        (thread_id,),
    )
    return int(step)


def has_step(url: str, thread_id: str, step: int) -> bool:
    found = rows(
        url,
        "SELECT 1 FROM checkpoints WHERE thread_id = %s AND checkpoint_ns = '' "
        "AND (metadata ->> 'step')::int = %s",
        (thread_id, step),
    )
    return bool(found)


def node_writes_since(url: str, thread_id: str, node: str, step: int) -> list[tuple[Any, ...]]:
    """Saved writes of `node`'s tasks keyed to checkpoints newer than the one at `step` (saved or not: a
    pull task's task_path names its node)."""
    return rows(
        url,
        "SELECT checkpoint_id, channel FROM checkpoint_writes WHERE thread_id = %s "
        "AND task_path = '~__pregel_pull, ' || %s AND checkpoint_id > (SELECT checkpoint_id "
        "FROM checkpoints WHERE thread_id = %s AND checkpoint_ns = '' AND (metadata ->> 'step')::int = %s)",
        (thread_id, node, thread_id, step),
    )


def transcript_ids(url: str, thread_id: str) -> list[str]:
    """The thread's archived message ids, in archive order."""
    found = rows(
        url, "SELECT message_id FROM convomem_transcript WHERE thread_id = %s ORDER BY position", (thread_id,)
    )
    return [str(row[0]) for row in found]


def assert_transcript_kept_once(url: str, thread_id: str, messages: list[str]) -> None:
    """Every one of `messages` archived, none twice (reduce_history re-archives after a crash)."""
    [(count, distinct)] = rows(
        url,
        "SELECT count(*), count(DISTINCT message_id) FROM convomem_transcript WHERE thread_id = %s",
        (thread_id,),
    )
    assert count == distinct, f"a message archived twice: {transcript_ids(url, thread_id)}"
    missing = set(messages) - set(transcript_ids(url, thread_id))
    assert not missing, f"messages never archived: {missing}"


def ids(messages: list[AnyMessage]) -> list[str]:
    return [str(m.id) for m in messages]


def shape(messages: list[AnyMessage]) -> list[tuple[str, str]]:
    return [(m.type, m.text) for m in messages]


# -------------------------------------------------------------------------------------- load_memory


def test_killed_in_load_memory_then_resumed(
    cli: Cli, fake_model: FakeOpenAIServer, settings: Settings, database_url: str, tmp_path: Path
) -> None:
    """Killed while load_memory's store search waits for `store`, locked ACCESS EXCLUSIVE by an admin
    transaction taken before the child started: everything the child did until then (setup, the thread
    lock, the input checkpoint) never needed the table, which the checks on the blocked state show."""
    assert_ok(cli.run("chat", "--thread", THREAD, "--user", USER, "--message", PRIOR))
    prior_step = newest_step(database_url, THREAD)
    before = request_counts(fake_model)
    url = database_url

    with TableLock(database_url, "store", "ACCESS EXCLUSIVE") as admin:
        with reaped(start_chat(cli, tmp_path, env={})) as child:
            kill_when_blocked(
                child, database_url, [admin.pid],
                lambda: any(" FROM STORE " in q.upper() for q in waiting_statements(url, [admin.pid])),
                "the child's store search queued behind the admin's lock",
            )  # fmt: skip
        assert newest_step(database_url, THREAD) == prior_step + 2, "saved: the input, __start__'s step"
    assert other_backends(database_url) == []

    crash = state(settings, THREAD)
    assert crash.next == ("load_memory",)
    assert [m.text for m in crash.values["messages"]][-1] == TEXT
    assert request_counts(fake_model) == before, "respond never started"

    resume_in_new_process(cli)

    assert request_counts(fake_model) - before == Counter(respond=1, extract=1)
    remembered = system_prompt(fake_model.requests_of("respond")[-1])
    assert "Acme" in remembered, "the resumed load_memory read the store (the prior turn's entity)"
    assert_turn_completed_once(settings, [PRIOR, TEXT])
    assert_each_node_ran_once_per_turn(settings, turns=2)
    assert_entities_counted_once(settings, PRIOR, TEXT)
    assert_linear_history(database_url, THREAD)
    assert_transcript_kept_once(database_url, THREAD, ids(state(settings, THREAD).values["messages"]))


# ----------------------------------------------------------------------------------- reduce_history

MODEL_KINDS = {"extract_entities": "extract", "summarize": "summarize"}
BEFORE_THE_FOLD = 4
"""Messages in the folding turn's working set when reduce_history starts: both turns' question and reply."""


def control_run(cli: Cli, settings: Settings) -> dict[str, Any]:
    """The two turns of the reduce_history tests, uninterrupted, on another thread and user: the working set
    and summary the crashed thread must end with (the fake model answers deterministically)."""
    for text in (PRIOR, TEXT):
        assert_ok(
            cli.run(
                "chat", "--thread", CONTROL_THREAD, "--user", CONTROL_USER, "--message", text,
                env=SMALL_WORKING_SET,
            )
        )  # fmt: skip
    control = dict(state(settings, CONTROL_THREAD).values)
    assert len(control["messages"]) == 2, "the control's second turn folded the first"
    return control


def prior_turn(cli: Cli, database_url: str) -> int:
    """The turn the next one folds; returns the step number of the next turn's checkpoint that ends its
    extract_entities/summarize step (the input, then the steps of __start__, load_memory, respond)."""
    assert_ok(cli.run("chat", "--thread", THREAD, "--user", USER, "--message", PRIOR, env=SMALL_WORKING_SET))
    return newest_step(database_url, THREAD) + 5


@contextmanager
def folding_chat(
    cli: Cli, fake: FakeOpenAIServer, database_url: str, tmp_path: Path, memory_step: int, *options: str
) -> Iterator[subprocess.Popen[bytes]]:
    """The chat whose summarize folds the prior turn, yielded once its extract_entities/summarize step
    waits in the model (summarize held MODEL_HOLD_SECONDS), respond's checkpoint is saved and so are
    extract_entities's writes (it finished: the locks the tests take next hold back summarize's only)."""
    seen = len(fake.requests_of("summarize"))
    fake.set_delay("summarize", MODEL_HOLD_SECONDS)
    try:
        with reaped(start_chat(cli, tmp_path, *options, env=SMALL_WORKING_SET)) as child:
            wait_until(
                lambda: (
                    len(fake.requests_of("summarize")) > seen
                    and has_step(database_url, THREAD, memory_step - 1)
                    and bool(node_writes_since(database_url, THREAD, "extract_entities", memory_step - 2))
                ),
                timeout=WAIT,
                what="summarize waiting in the model; respond's checkpoint, extract_entities's writes saved",
                alive=child,
            )
            fake.set_delay("summarize", 0)
            yield child
    finally:
        fake.set_delay("summarize", 0)


@dataclass(frozen=True)
class FoldCrash:
    """The thread as the killed run left it, and what resume must turn it into."""

    requests: Counter[str]
    due: tuple[str, ...]
    finished: frozenset[str]
    """Nodes of the head's step whose writes were saved: resume applies them instead of running them."""
    expected_ids: list[str]
    folded: set[str]


def fold_crash(
    settings: Settings, fake: FakeOpenAIServer, control: dict[str, Any], step: set[str]
) -> FoldCrash:
    """The killed run's thread: its head's `step` nodes either due or finished (writes saved)."""
    snapshot = state(settings, THREAD)
    finished = frozenset(t.name for t in snapshot.tasks if t.result is not None)
    assert set(snapshot.next) | finished == step and not finished & set(snapshot.next), snapshot.tasks
    messages: list[AnyMessage] = snapshot.values["messages"]
    assert [m.text for m in messages if m.type == "human"] == [PRIOR, TEXT], "nothing folded yet"
    kept = set(shape(control["messages"]))
    expected = [str(m.id) for m in messages if (m.type, m.text) in kept]
    folded = set(ids(messages)) - set(expected)
    assert len(expected) == 2 and len(folded) == 2
    return FoldCrash(request_counts(fake), tuple(snapshot.next), finished, expected, folded)


def assert_resumed_like_an_uninterrupted_run(
    settings: Settings, fake: FakeOpenAIServer, crash: FoldCrash, control: dict[str, Any]
) -> None:
    """Same message ids as the killed run had, minus the folded ones, removed exactly once (one checkpoint
    drops them); the summary kept; working set and summary equal to the control's; the model asked again
    only for the due nodes whose writes were not saved; every message, folded or kept, archived once;
    plus test_crash_resume.py's post-conditions."""
    url = str(settings.database_url)
    values = state(settings, THREAD).values
    messages: list[AnyMessage] = values["messages"]
    assert ids(messages) == crash.expected_ids
    assert values.get("summarized_ids") == [], "reduce_history cleared the folded ids"
    assert shape(messages) == shape(control["messages"])
    assert values["summary"] == control["summary"]
    infos = history(settings, THREAD)  # newest first
    drops = [(new.messages, old.messages) for new, old in pairwise(infos) if new.messages < old.messages]
    assert drops == [(2, 4)], f"the folded messages left the working set once, in one checkpoint: {drops}"
    rerun = Counter(MODEL_KINDS[node] for node in crash.due if node in MODEL_KINDS)
    assert request_counts(fake) - crash.requests == rerun, "only nodes whose writes were lost asked the model"
    assert_turn_completed_once(settings, [TEXT])
    assert_each_node_ran_once_per_turn(settings, turns=2)
    assert_entities_counted_once(settings, PRIOR, TEXT)
    assert_linear_history(url, THREAD)
    assert orphan_writes(url, THREAD) == 0
    assert_transcript_kept_once(url, THREAD, [*crash.expected_ids, *crash.folded])


@pytest.mark.parametrize("durability", ["sync", "async"])
def test_killed_in_reduce_history_before_its_result_is_saved_then_resumed(
    cli: Cli,
    fake_model: FakeOpenAIServer,
    settings: Settings,
    database_url: str,
    tmp_path: Path,
    durability: str,
) -> None:
    """The kill comes once the checkpoint that opens reduce_history's step (next: reduce_history) is
    saved and reduce_history has returned, and before anything of that step is saved: its writes or the
    final checkpoint (both issued only once it returned) are seen queued on an admin's lock, and the
    tables of the other are locked too. Its archive did reach the transcript, so resume archives the
    same messages again and must store none twice. With durability "async" reduce_history starts while
    that checkpoint is being saved; with "sync" once the save returned.

    Getting there deterministically: while summarize waits in the model, lock `convomem_transcript`
    (SHARE), so reduce_history stops at its archive INSERT, the first thing it does; wait until that
    checkpoint is saved and the archive is queued; then lock the three checkpoint tables and release the
    transcript: the archive commits, reduce_history returns, and what it issues next blocks. Resume
    starts from that checkpoint and must run reduce_history, and only it, once.
    """
    control = control_run(cli, settings)
    memory_step = prior_turn(cli, database_url)
    url = database_url
    with (
        folding_chat(
            cli, fake_model, database_url, tmp_path, memory_step, "--durability", durability
        ) as child,
        TableLock(database_url, "convomem_transcript", "SHARE") as transcript,
    ):
        wait_until(
            lambda: waits_on(url, [transcript.pid], ARCHIVE) and has_step(url, THREAD, memory_step),
            timeout=WAIT,
            what="the checkpoint opening reduce_history's step saved, reduce_history's archive blocked",
            alive=child,
        )
        tables = "checkpoints, checkpoint_blobs, checkpoint_writes"
        with TableLock(database_url, tables, "SHARE") as checkpoint_tables:
            transcript.release()
            admins = [transcript.pid, checkpoint_tables.pid]
            kill_when_blocked(
                child, database_url, admins,
                lambda: waits_on(url, admins, (WRITES_SAVE, *CHECKPOINT_SAVE)),
                "reduce_history returned: its writes or the final checkpoint blocked",
            )  # fmt: skip
            assert newest_step(database_url, THREAD) == memory_step, "the final checkpoint was not saved"
    assert other_backends(database_url) == []
    assert node_writes_since(database_url, THREAD, "reduce_history", memory_step - 1) == [], (
        "none of its writes"
    )
    crash = fold_crash(settings, fake_model, control, {"reduce_history"})
    archived = transcript_ids(database_url, THREAD)
    assert set(archived) == {*crash.expected_ids, *crash.folded}, "the killed run archived its working set"

    resume_in_new_process(cli, env=SMALL_WORKING_SET)

    assert_resumed_like_an_uninterrupted_run(settings, fake_model, crash, control)
    assert transcript_ids(database_url, THREAD) == archived, "resume's archive added nothing"


def test_killed_while_the_checkpoint_overlapping_reduce_history_is_saved_then_resumed(
    cli: Cli, fake_model: FakeOpenAIServer, settings: Settings, database_url: str, tmp_path: Path
) -> None:
    """`--durability async`: the checkpoint that ends the extract_entities/summarize step (next:
    reduce_history) is saved concurrently with reduce_history's step. The kill comes while that save is
    blocked, once reduce_history's archive is in the transcript: an admin's SHARE lock on the three
    checkpoint tables, taken while summarize waits in the model, holds back that checkpoint, summarize's
    writes and reduce_history's, and the final checkpoint, which waits for the one before it. The
    newest saved checkpoint is respond's.

    extract_entities finished before the lock (folding_chat waits for its writes): resume applies them
    and does not ask the model again. summarize's writes were not saved, so resume runs it again, with
    the same result (a summary is state only, written nowhere else), then reduce_history once, whose
    archive repeats the killed run's and must store nothing twice. The test holds either way: a node
    runs again only when its writes were not saved.
    """
    control = control_run(cli, settings)
    memory_step = prior_turn(cli, database_url)
    url = database_url
    with (
        folding_chat(cli, fake_model, database_url, tmp_path, memory_step, "--durability", "async") as child,
        TableLock(database_url, "checkpoints, checkpoint_blobs, checkpoint_writes", "SHARE") as admin,
    ):
        assert not has_step(database_url, THREAD, memory_step)
        admins = [admin.pid]
        kill_when_blocked(
            child, database_url, admins,
            lambda: (
                waits_on(url, admins, CHECKPOINT_SAVE) and len(transcript_ids(url, THREAD)) == BEFORE_THE_FOLD
            ),
            "the checkpoint opening reduce_history's step blocked, reduce_history's archive committed",
        )  # fmt: skip
        assert newest_step(database_url, THREAD) == memory_step - 1
    assert other_backends(database_url) == []
    assert node_writes_since(database_url, THREAD, "reduce_history", memory_step - 1) == [], (
        "none of its writes"
    )
    crash = fold_crash(settings, fake_model, control, {"extract_entities", "summarize"})
    assert crash.finished == {"extract_entities"}, (
        "the node that finished before the lock had its writes saved"
    )
    archived = transcript_ids(database_url, THREAD)
    assert set(archived) == {*crash.expected_ids, *crash.folded}, "the killed run's reduce_history archived"

    resume_in_new_process(cli, env=SMALL_WORKING_SET)

    assert_resumed_like_an_uninterrupted_run(settings, fake_model, crash, control)
    assert transcript_ids(database_url, THREAD) == archived, "resume's archive added nothing"
