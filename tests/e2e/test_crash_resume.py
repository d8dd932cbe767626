"""A `convomem chat` process SIGKILLed inside each model node, then finished by `convomem resume` in a new
process: the turn completes, nothing that had finished re-runs, nothing is written twice."""

from __future__ import annotations

import os
import signal
from collections import Counter
from dataclasses import dataclass
from pathlib import Path

import pytest

from graphs.settings import Settings
from tests.e2e.cli_support import (
    Cli,
    assert_ok,
    entities,
    history,
    other_backends,
    session_processes,
    state,
    wait_until,
)
from tests.fake_openai import KINDS, FakeOpenAIServer, extract_entities
from tests.integration.support import rows

pytestmark = [pytest.mark.slow, pytest.mark.timeout(180)]

THREAD = "crash"
USER = "u-crash"
PRIOR = "I work at Acme on the billing platform, mostly on invoices, refunds and the nightly ledger jobs."
TEXT = "My name is Alice and I live in Paris with two cats, and on weekends I guide tours at the Louvre."
SMALL_WORKING_SET = {"CONVOMEM_WORKING_SET_TOKENS": "64"}
"""With a prior turn, the working set is over this budget, so summarize calls the model."""
BLOCK_SECONDS = 30.0
NODES_BY_KIND = {"respond": "respond", "extract": "extract_entities", "summarize": "summarize"}


@dataclass(frozen=True)
class Crash:
    """What a killed run left behind: model requests so far, and the thread's next nodes."""

    requests: Counter[str]
    next_nodes: tuple[str, ...]
    finished_tasks: frozenset[str]


def request_counts(fake: FakeOpenAIServer) -> Counter[str]:
    return Counter({kind: len(fake.requests_of(kind)) for kind in KINDS})


def head_write_channels(url: str, thread_id: str) -> set[str]:
    """Channels written (as pending writes) on the thread's newest checkpoint: finished tasks' outputs."""
    found = rows(
        url,
        "SELECT channel FROM checkpoint_writes WHERE thread_id = %s AND checkpoint_ns = '' "
        "AND checkpoint_id = (SELECT max(checkpoint_id) FROM checkpoints "
        "WHERE thread_id = %s AND checkpoint_ns = '')",
        (thread_id, thread_id),
    )
    return {row[0] for row in found}


def kill_inside(
    cli: Cli,
    fake: FakeOpenAIServer,
    settings: Settings,
    database_url: str,
    tmp_path: Path,
    kind: str,
    *,
    also_finished: str | None = None,
    env: dict[str, str] | None = None,
) -> Crash:
    """Run `chat` until it blocks inside the `kind` model call (and `also_finished`'s writes are saved),
    then SIGKILL it and check it left no process and no server session behind."""
    seen = len(fake.requests_of(kind))
    fake.set_delay(kind, BLOCK_SECONDS)
    child = cli.start(
        "chat", "--thread", THREAD, "--user", USER, "--message", TEXT,
        stdout=tmp_path / "child.out", stderr=tmp_path / "child.err", env=env,
    )  # fmt: skip
    try:
        wait_until(
            lambda: len(fake.requests_of(kind)) > seen, timeout=30, what=f"a {kind} request", alive=child
        )
        if also_finished is not None:
            wait_until(
                lambda: also_finished in head_write_channels(database_url, THREAD),
                timeout=30,
                what=f"the saved `{also_finished}` write of the parallel node",
                alive=child,
            )
        assert child.poll() is None, "the child must still be blocked in the model call"
        os.kill(child.pid, signal.SIGKILL)
        child.wait(timeout=10)
    finally:
        if child.poll() is None:
            child.kill()
            child.wait(timeout=10)
        fake.set_delay(kind, 0)
    assert child.returncode == -signal.SIGKILL
    wait_until(
        lambda: not session_processes(child.pid),
        timeout=10,
        what=f"no process left in the killed child's session: {session_processes(child.pid)}",
    )
    wait_until(
        lambda: not other_backends(database_url),
        timeout=10,
        what=f"the killed child's Postgres sessions gone: {other_backends(database_url)}",
    )
    snapshot = state(settings, THREAD)
    assert NODES_BY_KIND[kind] in snapshot.next, f"the run was cut inside {kind}: next={snapshot.next}"
    finished = frozenset(t.name for t in snapshot.tasks if t.result is not None)
    return Crash(request_counts(fake), tuple(snapshot.next), finished)


def resume_in_new_process(cli: Cli, env: dict[str, str] | None = None) -> None:
    """`convomem resume` without --user: the thread's own user comes from its checkpoint metadata."""
    assert_ok(cli.run("resume", "--thread", THREAD, env=env))


def assert_turn_completed_once(settings: Settings, humans: list[str]) -> None:
    """Finished; message ids unique; exactly one AI reply right after the newest human message."""
    snapshot = state(settings, THREAD)
    assert snapshot.next == ()
    assert not snapshot.interrupts
    messages = snapshot.values["messages"]
    ids = [m.id for m in messages]
    assert len(ids) == len(set(ids)), f"a message was written twice: {ids}"
    assert [m.text for m in messages if m.type == "human"] == humans
    newest = max(i for i, m in enumerate(messages) if m.type == "human")
    assert [m.type for m in messages[newest:]] == ["human", "ai"], "exactly one reply to the message"
    assert messages[newest].text == TEXT


def assert_each_node_ran_once_per_turn(settings: Settings, turns: int) -> None:
    ran = Counter(node for info in history(settings, THREAD) for node in info.ran)
    for node in ("load_memory", "respond", "extract_entities", "summarize", "reduce_history"):
        assert ran[node] == turns, f"{node} produced {ran[node]} checkpoints for {turns} turn(s): {ran}"


def assert_entities_counted_once(settings: Settings, *texts: str) -> None:
    """Every entity of every message stored exactly once, for the thread's user only."""
    stored = {record.value: record for record in entities(settings, USER)}
    expected = {e["value"] for text in texts for e in extract_entities(text)}
    assert {"Alice", "Paris"} <= expected
    assert set(stored) == expected
    for record in stored.values():
        assert record.mentions == 1, f"{record.value} counted {record.mentions} times"
        assert len(record.source_message_ids) == 1
        assert record.threads == [THREAD]
    assert entities(settings, "default") == [], "resume ran as the thread's user, not the default one"


def test_killed_in_respond_then_resumed(
    cli: Cli, fake_model: FakeOpenAIServer, settings: Settings, database_url: str, tmp_path: Path
) -> None:
    crash = kill_inside(cli, fake_model, settings, database_url, tmp_path, "respond")
    assert crash.next_nodes == ("respond",)
    assert crash.requests == Counter(respond=1)

    resume_in_new_process(cli)

    assert request_counts(fake_model) - crash.requests == Counter(respond=1, extract=1)
    assert_turn_completed_once(settings, [TEXT])
    assert_each_node_ran_once_per_turn(settings, turns=1)
    assert_entities_counted_once(settings, TEXT)


def test_killed_in_extract_entities_then_resumed(
    cli: Cli, fake_model: FakeOpenAIServer, settings: Settings, database_url: str, tmp_path: Path
) -> None:
    assert_ok(cli.run("chat", "--thread", THREAD, "--user", USER, "--message", PRIOR, env=SMALL_WORKING_SET))
    crash = kill_inside(
        cli, fake_model, settings, database_url, tmp_path, "extract",
        also_finished="summary", env=SMALL_WORKING_SET,
    )  # fmt: skip
    assert crash.next_nodes == ("extract_entities",), "summarize is done: only extract_entities is due"
    assert crash.finished_tasks == {"summarize"}, "summarize finished and saved its write before the kill"
    assert crash.requests == Counter(respond=2, extract=2, summarize=1)

    resume_in_new_process(cli, env=SMALL_WORKING_SET)

    assert request_counts(fake_model) - crash.requests == Counter(extract=1), (
        "only the killed node re-ran: respond and summarize were not asked again"
    )
    assert_turn_completed_once(settings, [TEXT])
    assert state(settings, THREAD).values.get("summary"), "summarize's saved write was applied"
    assert_each_node_ran_once_per_turn(settings, turns=2)
    assert_entities_counted_once(settings, PRIOR, TEXT)


def test_killed_in_summarize_then_resumed(
    cli: Cli, fake_model: FakeOpenAIServer, settings: Settings, database_url: str, tmp_path: Path
) -> None:
    assert_ok(cli.run("chat", "--thread", THREAD, "--user", USER, "--message", PRIOR, env=SMALL_WORKING_SET))
    assert request_counts(fake_model)["summarize"] == 0, "one turn fits the working set"
    crash = kill_inside(
        cli, fake_model, settings, database_url, tmp_path, "summarize",
        also_finished="extraction", env=SMALL_WORKING_SET,
    )  # fmt: skip
    assert crash.next_nodes == ("summarize",), "extract_entities is done: only summarize is due"
    assert crash.finished_tasks == {"extract_entities"}
    assert crash.requests == Counter(respond=2, extract=2, summarize=1)

    resume_in_new_process(cli, env=SMALL_WORKING_SET)

    assert request_counts(fake_model) - crash.requests == Counter(summarize=1)
    snapshot = state(settings, THREAD)
    newest_human = next(m for m in reversed(snapshot.values["messages"]) if m.type == "human")
    assert snapshot.values["extraction"]["message_id"] == newest_human.id, (
        "extract_entities' saved write was applied, not a re-run (a re-run would skip the marked message)"
    )
    assert snapshot.values.get("summary", "").startswith("SUMMARY:")
    assert PRIOR not in [m.text for m in snapshot.values["messages"]], "the folded turn left the working set"
    assert_turn_completed_once(settings, [TEXT])
    assert_each_node_ran_once_per_turn(settings, turns=2)
    assert_entities_counted_once(settings, PRIOR, TEXT)
