"""A `convomem chat` process SIGKILLed inside the two nodes that make no model call, load_memory and
reduce_history, then finished by `convomem resume` in a new process (test_crash_resume.py covers respond,
extract_entities and summarize, which block in the fake model).

These nodes are stopped where they meet Postgres instead: an admin transaction holds a table lock the
child's next statement needs, the test waits until the child's server session is queued on that lock
(pg_stat_activity), SIGKILLs the child, and only releases the lock once the dead client's sessions are
gone. The child runs with `client_connection_check_interval`, so its blocked statement is cancelled when
Postgres notices the client is dead, not executed (and committed) after the release: nothing the killed
process had in flight reaches the database.
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
    `pid` is that session's server pid, which every probe for the child's sessions leaves out."""

    def __init__(self, url: str, table: str, mode: str) -> None:
        self.conn = psycopg.connect(url)  # not autocommit: the lock lives until the rollback
        self.conn.execute(f"LOCK TABLE {table} IN {mode} MODE")
        self.pid = self.conn.info.backend_pid

    def release(self) -> None:
        if not self.conn.closed:
            self.conn.rollback()
            self.conn.close()

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


def waits_on(url: str, admins: list[int], prefix: str) -> bool:
    return any(query.upper().startswith(prefix) for query in waiting_statements(url, admins))


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


def reduce_history_writes_since(url: str, thread_id: str, step: int) -> list[tuple[Any, ...]]:
    """Saved writes of reduce_history tasks keyed to checkpoints newer than the one at `step` (saved or
    not: a pull task's task_path names its node)."""
    return rows(
        url,
        "SELECT checkpoint_id, channel FROM checkpoint_writes WHERE thread_id = %s "
        "AND task_path = '~__pregel_pull, reduce_history' AND checkpoint_id > (SELECT checkpoint_id "
        "FROM checkpoints WHERE thread_id = %s AND checkpoint_ns = '' AND (metadata ->> 'step')::int = %s)",
        (thread_id, thread_id, step),
    )


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


# ----------------------------------------------------------------------------------- reduce_history

MODEL_KINDS = {"extract_entities": "extract", "summarize": "summarize"}


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
    waits in the model (summarize held MODEL_HOLD_SECONDS) and respond's checkpoint is saved."""
    seen = len(fake.requests_of("summarize"))
    fake.set_delay("summarize", MODEL_HOLD_SECONDS)
    try:
        with reaped(start_chat(cli, tmp_path, *options, env=SMALL_WORKING_SET)) as child:
            wait_until(
                lambda: (
                    len(fake.requests_of("summarize")) > seen
                    and has_step(database_url, THREAD, memory_step - 1)
                ),
                timeout=WAIT,
                what="summarize waiting in the model, respond's checkpoint saved",
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
    only for the due nodes whose writes were not saved; plus test_crash_resume.py's post-conditions."""
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
    saved, and before anything of that step can be: the saver (AsyncPostgresSaver, one operation at a
    time per process) is stuck on an INSERT INTO checkpoint_writes blocked by an admin's lock, and
    reduce_history's writes and the final checkpoint queue behind it. With durability "async"
    reduce_history's step has already run (it started while that checkpoint's save was held back); with
    "sync" it starts the moment that save returns.

    Getting there deterministically: while summarize waits in the model, lock `checkpoints` (SHARE), so
    the checkpoint that ends the extract_entities/summarize step blocks; then lock `checkpoint_writes`
    and release `checkpoints`: that checkpoint lands, and the next write, whichever task's it is, blocks.
    Resume starts from it and must run reduce_history, and only it, once.
    """
    control = control_run(cli, settings)
    memory_step = prior_turn(cli, database_url)
    with (
        folding_chat(
            cli, fake_model, database_url, tmp_path, memory_step, "--durability", durability
        ) as child,
        TableLock(database_url, "checkpoints", "SHARE") as checkpoints,
    ):
        wait_until(
            lambda: waits_on(database_url, [checkpoints.pid], "INSERT INTO CHECKPOINTS"),
            timeout=WAIT,
            what="the checkpoint that ends the extract_entities/summarize step blocked",
            alive=child,
        )
        assert not has_step(database_url, THREAD, memory_step)
        with TableLock(database_url, "checkpoint_writes", "SHARE") as writes:
            checkpoints.release()
            admins = [checkpoints.pid, writes.pid]
            kill_when_blocked(
                child, database_url, admins,
                lambda: waits_on(database_url, admins, "INSERT INTO CHECKPOINT_WRITES")
                and has_step(database_url, THREAD, memory_step),
                "the checkpoint opening reduce_history's step saved, the writes after it blocked",
            )  # fmt: skip
            assert newest_step(database_url, THREAD) == memory_step, "the final checkpoint was not saved"
    assert other_backends(database_url) == []
    assert reduce_history_writes_since(database_url, THREAD, memory_step - 1) == [], "none of its writes"
    crash = fold_crash(settings, fake_model, control, {"reduce_history"})

    resume_in_new_process(cli, env=SMALL_WORKING_SET)

    assert_resumed_like_an_uninterrupted_run(settings, fake_model, crash, control)


def test_killed_while_the_checkpoint_overlapping_reduce_history_is_saved_then_resumed(
    cli: Cli, fake_model: FakeOpenAIServer, settings: Settings, database_url: str, tmp_path: Path
) -> None:
    """`--durability async`: the checkpoint that ends the extract_entities/summarize step (next:
    reduce_history) is saved concurrently with reduce_history's step. An admin's SHARE lock on
    `checkpoints`, taken while summarize waits in the model, blocks that INSERT, and the kill comes while
    it is blocked: reduce_history's step runs meanwhile, but its writes and the final checkpoint queue
    behind the blocked save, so the newest saved checkpoint is respond's.

    extract_entities finished seconds earlier and its writes are saved on it: resume applies them and
    does not ask the model again. summarize finished last, and today its writes queue behind that same
    blocked save (upstream's aput_writes serializes in a worker thread before it takes the saver's lock;
    aput takes it at once), so resume runs it again, with the same result (a summary is state only,
    written nowhere else), then reduce_history once. The test holds either way: a node runs again only
    when its writes were not saved.
    """
    control = control_run(cli, settings)
    memory_step = prior_turn(cli, database_url)
    with (
        folding_chat(cli, fake_model, database_url, tmp_path, memory_step, "--durability", "async") as child,
        TableLock(database_url, "checkpoints", "SHARE") as admin,
    ):
        assert not has_step(database_url, THREAD, memory_step)
        kill_when_blocked(
            child, database_url, [admin.pid],
            lambda: waits_on(database_url, [admin.pid], "INSERT INTO CHECKPOINTS"),
            "the checkpoint opening reduce_history's step blocked",
        )  # fmt: skip
        assert newest_step(database_url, THREAD) == memory_step - 1
    assert other_backends(database_url) == []
    assert reduce_history_writes_since(database_url, THREAD, memory_step - 1) == [], "none of its writes"
    crash = fold_crash(settings, fake_model, control, {"extract_entities", "summarize"})
    assert "extract_entities" in crash.finished, "the node that finished first had its writes saved"

    resume_in_new_process(cli, env=SMALL_WORKING_SET)

    assert_resumed_like_an_uninterrupted_run(settings, fake_model, crash, control)
