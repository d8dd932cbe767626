"""Load: 64 threads x 20 turns over 4 real OS processes on one database, zero lost turns.

Each process drives the Python API (`open_convomem`) with asyncio concurrency for its 16 threads, one
coroutine per thread sending its turns in order; the model is the in-process fake OpenAI server (threaded
HTTP). Afterwards every thread holds exactly its 20 human messages and their 20 replies, in order, on one
unforked chain of checkpoints, and its user's memory counted every turn once.

The worker side lives here too (`python -m tests.e2e.test_load --process P ...`), so the test and the load
it runs cannot drift apart.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import subprocess
import sys
import threading
import time
from collections import Counter
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from graphs.api import open_convomem
from graphs.settings import Settings
from tests.e2e.cli_support import cli_environment, other_backends
from tests.fake_openai import FakeOpenAIServer
from tests.integration.support import assert_linear_history, rows

pytestmark = [pytest.mark.slow, pytest.mark.timeout(330)]

PROCESSES = 4
THREADS_PER_PROCESS = 16
TURNS = 20
THREADS = PROCESSES * THREADS_PER_PROCESS
WORKING_SET_TOKENS = "100000"
"""Far above 40 short messages: nothing is folded out of the working set, so every turn can be counted."""
BUDGET_SECONDS = 240.0
"""The whole load must finish within this (2 cores): each worker is killed past it and the test fails."""
CHECKPOINTS_PER_TURN = 6
"""The input checkpoint, then one per step: __start__, load_memory, respond, the two memory nodes,
reduce_history."""
REPO = Path(__file__).resolve().parents[2]


def thread_id(process: int, index: int) -> str:
    return f"load-{process}-{index}"


def user_id(process: int, index: int) -> str:
    return f"user-{process}-{index}"


def turn_text(process: int, index: int, turn: int) -> str:
    """Unique per thread and turn (so a lost, doubled or reordered turn shows), naming one place."""
    return f"Turn {turn} of thread {process}-{index}: today I am in Paris again."


# ------------------------------------------------------------------------------------------ worker


async def _drive(process: int, threads: int, turns: int) -> dict[str, Any]:
    """One process's share: `threads` threads at once, each sending its `turns` messages in order."""
    started = time.monotonic()
    async with open_convomem(Settings(), max_concurrent_runs=threads) as cm:

        async def converse(index: int) -> int:
            for turn in range(turns):
                ended = await cm.send(
                    thread_id(process, index),
                    turn_text(process, index, turn),
                    user_id=user_id(process, index),
                )
                if ended.next_nodes or not ended.reply:
                    raise AssertionError(f"turn {turn} of {thread_id(process, index)} ended early: {ended}")
            return turns

        done = await asyncio.gather(*(converse(index) for index in range(threads)))
    return {"process": process, "turns": sum(done), "seconds": round(time.monotonic() - started, 2)}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description="One load-test worker process (settings from the environment)."
    )
    parser.add_argument("--process", type=int, required=True)
    parser.add_argument("--threads", type=int, default=THREADS_PER_PROCESS)
    parser.add_argument("--turns", type=int, default=TURNS)
    args = parser.parse_args(argv)
    print(json.dumps(asyncio.run(_drive(args.process, args.threads, args.turns))), flush=True)
    return 0


# -------------------------------------------------------------------------------------------- test


@dataclass
class Worker:
    process: int
    popen: subprocess.Popen[bytes]
    out: Path
    err: Path

    def report(self) -> dict[str, Any]:
        lines = self.out.read_text().strip().splitlines()
        assert lines, f"worker {self.process} printed nothing\n{self.err.read_text()[-3000:]}"
        result: dict[str, Any] = json.loads(lines[-1])
        return result


def start_worker(process: int, env: dict[str, str], logs: Path) -> Worker:
    out, err = logs / f"worker-{process}.out", logs / f"worker-{process}.err"
    with out.open("wb") as stdout, err.open("wb") as stderr:
        popen = subprocess.Popen(
            [sys.executable, "-m", "tests.e2e.test_load", "--process", str(process)],
            stdin=subprocess.DEVNULL,
            stdout=stdout,
            stderr=stderr,
            env=env,
            cwd=REPO,
            start_new_session=True,
        )
    return Worker(process, popen, out, err)


class PeakSessions:
    """Polls the database's client sessions while the load runs (pools must fit max_connections)."""

    def __init__(self, url: str) -> None:
        self.url = url
        self.peak = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._poll, name="peak-sessions", daemon=True)

    def _poll(self) -> None:
        while not self._stop.wait(0.5):
            self.peak = max(self.peak, len(other_backends(self.url)))

    def __enter__(self) -> PeakSessions:
        self._thread.start()
        return self

    def __exit__(self, *exc_info: object) -> None:
        self._stop.set()
        self._thread.join(timeout=5)


async def test_64_threads_20_turns_over_4_processes_lose_no_turn(
    database_url: str,
    fake_model: FakeOpenAIServer,
    settings: Settings,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
) -> None:
    big_working_set = {"CONVOMEM_WORKING_SET_TOKENS": WORKING_SET_TOKENS}
    env = cli_environment(database_url, fake_model.base_url, tmp_path / "data", big_working_set)
    async with open_convomem(settings):
        pass  # the one setup step, so the workers do not all race to create the tables
    logs = tmp_path / "logs"
    logs.mkdir()

    started = time.monotonic()
    with PeakSessions(database_url) as sessions:
        workers = [start_worker(process, env, logs) for process in range(PROCESSES)]
        try:
            for worker in workers:
                remaining = BUDGET_SECONDS - (time.monotonic() - started)
                worker.popen.wait(timeout=max(remaining, 1.0))
        finally:
            for worker in workers:
                if worker.popen.poll() is None:
                    worker.popen.kill()
                    worker.popen.wait(timeout=10)
    elapsed = time.monotonic() - started

    for worker in workers:
        assert worker.popen.returncode == 0, f"worker {worker.process}:\n{worker.err.read_text()[-3000:]}"
        assert "Traceback" not in worker.err.read_text(), worker.err.read_text()[-3000:]
        assert worker.report()["turns"] == THREADS_PER_PROCESS * TURNS
    total = THREADS * TURNS
    with capsys.disabled():  # the throughput shows in every run's output, not only on failure
        print(
            f"\nload: {THREADS} threads x {TURNS} turns over {PROCESSES} processes = {total} turns in "
            f"{elapsed:.1f} s: {total / elapsed:.1f} turns/s; peak {sessions.peak} Postgres sessions; "
            f"per process {[worker.report()['seconds'] for worker in workers]} s"
        )

    assert Counter(r["kind"] for r in fake_model.requests) == Counter(respond=total, extract=total)
    async with open_convomem(settings) as cm:
        for process in range(PROCESSES):
            for index in range(THREADS_PER_PROCESS):
                thread = thread_id(process, index)
                snapshot = await cm.state(thread)
                assert snapshot.next == () and not snapshot.interrupts, thread
                messages = snapshot.values["messages"]
                texts = [turn_text(process, index, turn) for turn in range(TURNS)]
                assert [(m.type, m.text) for m in messages] == [
                    pair for text in texts for pair in (("human", text), ("ai", f"Noted: {text[:60]}"))
                ], f"{thread} lost, doubled or reordered a turn"
                assert len({m.id for m in messages}) == 2 * TURNS
                chain = assert_linear_history(database_url, thread)
                assert len(chain) == CHECKPOINTS_PER_TURN * TURNS, f"{thread}: a step ran twice or not at all"
                [paris] = [e for e in await cm.entities(user_id(process, index)) if e.value == "Paris"]
                assert paris.mentions == TURNS and paris.threads == [thread]
    [(threads,)] = rows(database_url, "SELECT count(DISTINCT thread_id) FROM checkpoints")
    assert threads == THREADS
    assert other_backends(database_url) == [], "every worker's sessions closed"


if __name__ == "__main__":
    sys.exit(main())
