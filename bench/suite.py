"""The measurements: turn cost, storage and prompt size vs length; concurrency; cold resume; local model."""

from __future__ import annotations

import asyncio
import importlib.util
import json
import os
import statistics
import subprocess
import sys
import time
from collections import Counter
from collections.abc import Sequence
from contextlib import AsyncExitStack
from dataclasses import dataclass, field
from pathlib import Path

import psycopg

from bench.db import Storage, committed_transactions, create_database, database_in, thread_storage
from bench.drivers import Driver, Variant, open_driver
from bench.processes import prepare_database, run_workers
from bench.workload import user_message

__all__ = [
    "ColdResult",
    "ConcurrencyResult",
    "LengthResult",
    "LocalResult",
    "Sizes",
    "cold_resume",
    "concurrency",
    "kept_messages",
    "length_runs",
    "local_model",
    "percentile",
    "profile_cold",
    "profile_turns",
    "progress",
]

REPO = Path(__file__).resolve().parents[1]
LENGTH_THREAD = "bench-length"
LENGTH_USER = "bench-length-user"
COLD_THREAD = "bench-cold"
COLD_USER = "bench-cold-user"
PROFILE_TURNS = 20


@dataclass(frozen=True)
class Sizes:
    turns: int
    window: int
    storage_at: tuple[int, ...]
    concurrency: tuple[int, ...]
    concurrency_turns: int
    cold_turns: int
    local_model: bool
    node_turns: int

    @staticmethod
    def full() -> Sizes:
        return Sizes(1000, 50, (100, 300, 1000), (8, 32, 64), 20, 500, True, 50)

    @staticmethod
    def quick() -> Sizes:
        return Sizes(150, 50, (100, 150), (8,), 10, 100, False, 20)


def progress(message: str) -> None:
    print(f"[bench {time.strftime('%H:%M:%S')}] {message}", flush=True)


def percentile(values: list[float], q: float) -> float:
    """Nearest-rank percentile (q in 0-100) of a non-empty sample."""
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, max(0, round(q / 100 * len(ordered) + 0.5) - 1))]


# ------------------------------------------------------------------------------------ 1-3: length


@dataclass
class LengthResult:
    variant: str
    latencies: list[float] = field(default_factory=list)
    first_tokens: list[float] = field(default_factory=list)
    prompt_tokens: list[int] = field(default_factory=list)
    storage: dict[int, Storage] = field(default_factory=dict)
    kept_messages: int = 0
    commits_per_turn: float = 0.0
    wal_per_turn: float = 0.0

    def window_p50(self, window: int) -> list[float]:
        """p50 turn latency (s) per window of `window` turns."""
        chunks = [self.latencies[i : i + window] for i in range(0, len(self.latencies), window)]
        return [statistics.median(chunk) for chunk in chunks if chunk]


def kept_messages(url: str, thread_id: str, state_ids: list[str]) -> int:
    """Distinct messages of the thread still kept: in its state, or in convomem's transcript."""
    ids = set(state_ids)
    with psycopg.connect(url, autocommit=True) as conn:
        if conn.execute("SELECT to_regclass('convomem_transcript') IS NOT NULL").fetchone() == (True,):
            rows = conn.execute(
                "SELECT message_id FROM convomem_transcript WHERE thread_id = %s", (thread_id,)
            ).fetchall()
            ids.update(str(row[0]) for row in rows)
    return len(ids)


def _wal_position(conn: psycopg.Connection[tuple[int]]) -> int:
    row = conn.execute("SELECT pg_wal_lsn_diff(pg_current_wal_lsn(), '0/0')::bigint").fetchone()
    return int(row[0]) if row else 0


async def length_runs(
    variants: Sequence[Variant], root_url: str, data_dir: Path, sizes: Sizes
) -> dict[str, LengthResult]:
    """One thread per variant, each on a fresh database of its own, `sizes.turns` turns, in lock step:
    turn n of every variant (in a rotating order), then turn n+1. A shared machine's changing load then
    hits every variant alike instead of whichever ran during a busy minute. The WAL a turn wrote is the
    server's WAL position before and after it (nothing else writes meanwhile but autovacuum)."""
    urls = {v: create_database(root_url, f"bench_length_{v.replace('-', '_')}") for v in variants}
    results: dict[str, LengthResult] = {v: LengthResult(v) for v in variants}
    before = {v: committed_transactions(urls[v]) for v in variants}
    wal: dict[str, int] = dict.fromkeys(variants, 0)
    async with AsyncExitStack() as stack:
        drivers = {v: await stack.enter_async_context(open_driver(v, urls[v], data_dir)) for v in variants}
        with psycopg.connect(root_url, autocommit=True) as conn:
            for turn in range(1, sizes.turns + 1):
                for variant in (*variants[turn % len(variants) :], *variants[: turn % len(variants)]):
                    position = _wal_position(conn)
                    timing = await drivers[variant].turn(LENGTH_THREAD, LENGTH_USER, user_message(1, turn))
                    wal[variant] += _wal_position(conn) - position
                    results[variant].latencies.append(timing.total)
                    results[variant].first_tokens.append(timing.first_token)
                    if turn in sizes.storage_at:
                        results[variant].storage[turn] = thread_storage(
                            urls[variant], LENGTH_THREAD, LENGTH_USER
                        )
                if turn % 100 == 0:
                    progress(f"  {turn}/{sizes.turns} turns")
        for variant, driver in drivers.items():
            results[variant].prompt_tokens = list(driver.model.prompt_tokens)
            ids = await driver.message_ids(LENGTH_THREAD)
            results[variant].kept_messages = kept_messages(urls[variant], LENGTH_THREAD, ids)
    await asyncio.sleep(0.5)  # closed sessions flush their statistics as they exit
    for variant in variants:
        after = committed_transactions(urls[variant])
        results[variant].commits_per_turn = (after - before[variant]) / sizes.turns
        results[variant].wal_per_turn = wal[variant] / sizes.turns
    return results


async def profile_turns(
    variant: Variant, root_url: str, data_dir: Path, after: int, profile_to: Path
) -> None:
    """PROFILE_TURNS more turns on the variant's length thread under pyinstrument; text profile to a file."""
    async with open_driver(
        variant, database_in(root_url, f"bench_length_{variant.replace('-', '_')}"), data_dir
    ) as driver:
        await _profile_turns(driver, after, profile_to)


async def _profile_turns(driver: Driver, after: int, profile_to: Path) -> None:
    from pyinstrument import Profiler

    profiler = Profiler(interval=0.0005, async_mode="disabled")  # every task on the loop, not just this one
    profiler.start()
    for turn in range(after + 1, after + 1 + PROFILE_TURNS):
        await driver.turn(LENGTH_THREAD, LENGTH_USER, user_message(1, turn))
    profiler.stop()
    profile_to.write_text(profiler.output_text(unicode=True, show_all=False))


# -------------------------------------------------------------------------------- 4: concurrency


@dataclass(frozen=True)
class ConcurrencyResult:
    variant: str
    threads: int
    processes: int
    turns: int
    seconds: float
    latencies: list[float]

    @property
    def turns_per_s(self) -> float:
        return self.turns / self.seconds

    @property
    def p50(self) -> float:
        return statistics.median(self.latencies)

    @property
    def p99(self) -> float:
        return percentile(self.latencies, 99)


async def drive_threads(driver: Driver, prefix: str, threads: int, turns: int) -> list[float]:
    """`threads` conversations at once, each sending its `turns` messages in order (one user each)."""

    async def converse(index: int) -> list[float]:
        thread, user = f"{prefix}-t{index}", f"{prefix}-u{index}"
        return [(await driver.turn(thread, user, user_message(index, turn))).total for turn in range(turns)]

    per_thread = await asyncio.gather(*(converse(i) for i in range(threads)))
    return [latency for latencies in per_thread for latency in latencies]


async def _one_process(
    variant: Variant, url: str, data_dir: Path, threads: int, turns: int
) -> ConcurrencyResult:
    async with open_driver(variant, url, data_dir, concurrency=threads) as driver:
        started = time.perf_counter()
        latencies = await drive_threads(driver, "p0", threads, turns)
        seconds = time.perf_counter() - started
    return ConcurrencyResult(variant, threads, 1, threads * turns, seconds, latencies)


async def concurrency(
    variant: Variant, root_url: str, data_dir: Path, threads: int, turns: int, processes: int
) -> ConcurrencyResult:
    """`threads` conversations of `turns` turns, in one process or split evenly over `processes`."""
    url = create_database(root_url, f"bench_conc_{variant.replace('-', '_')}_{threads}_{processes}")
    if processes == 1:
        return await _one_process(variant, url, data_dir, threads, turns)
    await prepare_database(variant, url, data_dir)
    run = await asyncio.to_thread(
        run_workers, variant, url, data_dir, processes=processes, threads=threads // processes, turns=turns
    )
    return ConcurrencyResult(variant, threads, processes, len(run.latencies), run.seconds, run.latencies)


# ------------------------------------------------------------------------------- 5: cold resume


@dataclass(frozen=True)
class ColdResult:
    turns: int
    phases: dict[str, float]
    """Seconds from before the process was spawned to: interpreter + imports, Postgres started,
    convomem opened, first streamed token, turn done."""


async def build_thread(root_url: str, data_dir: Path, turns: int) -> str:
    url = create_database(root_url, "bench_cold")
    async with open_driver("convomem", url, data_dir) as driver:
        for turn in range(turns):
            await driver.turn(COLD_THREAD, COLD_USER, user_message(7, turn))
    return url


def _cold_command(url: str, data_dir: Path, *python_options: str) -> list[str]:
    return [sys.executable, *python_options, "-m", "bench.cold", url, str(data_dir), COLD_THREAD, COLD_USER]


def _run_cold(command: list[str], data_dir: Path) -> tuple[float, subprocess.CompletedProcess[str]]:
    """Stop the embedded server (so the child's start of it counts), spawn the child, wait for it."""
    from checkpoint.embedded import stop_embedded

    stop_embedded(data_dir)
    spawned = time.time()
    done = subprocess.run(command, cwd=REPO, capture_output=True, text=True, check=False)
    if done.returncode != 0:
        raise RuntimeError(f"cold resume failed: {done.stderr[-2000:]}")
    return spawned, done


def cold_resume(url: str, data_dir: Path, turns: int) -> ColdResult:
    """A new process answers on the existing thread, from interpreter start to its first token."""
    spawned, done = _run_cold(_cold_command(url, data_dir), data_dir)
    marks: dict[str, float] = json.loads(done.stdout.strip().splitlines()[-1])
    return ColdResult(turns, {name: at - spawned for name, at in marks.items()})


def profile_cold(url: str, data_dir: Path, out: Path) -> list[Path]:
    """Two more cold starts: one under pyinstrument (profile_cold.txt), one with `-X importtime`, whose
    self times are summed per top-level package (profile_cold_imports.txt)."""
    profile, imports = out / "profile_cold.txt", out / "profile_cold_imports.txt"
    _run_cold(_cold_command(url, data_dir, "-m", "pyinstrument", "-o", str(profile)), data_dir)
    _, done = _run_cold(_cold_command(url, data_dir, "-X", "importtime"), data_dir)
    per_package: Counter[str] = Counter()
    for line in done.stderr.splitlines():
        fields = line.split("|")
        if line.startswith("import time:") and len(fields) == 3 and fields[0].split(":")[1].strip().isdigit():
            per_package[fields[2].strip().split(".")[0]] += int(fields[0].split(":")[1])
    total = sum(per_package.values())
    lines = [f"import time, self, summed per top-level package: {total / 1e6:.2f} s in all"]
    lines += [f"{us / 1e6:7.3f} s  {name}" for name, us in per_package.most_common(25)]
    imports.write_text("\n".join(lines) + "\n")
    return [profile, imports]


# -------------------------------------------------------------------------------- 6: local model


@dataclass(frozen=True)
class LocalResult:
    server_start: float
    first_token: float
    total: float
    tokens: int

    @property
    def tokens_per_s(self) -> float:
        return self.tokens / max(self.total - self.first_token, 1e-9)


async def local_model(data_dir: Path) -> LocalResult | None:
    """One turn on the embedded SmolLM2 server; None when the `local` extra is not installed."""
    if importlib.util.find_spec("llama_cpp") is None:
        return None
    from graphs.models import shared_chat_model
    from graphs.settings import Settings

    os.environ.pop("OPENAI_BASE_URL", None)
    os.environ.pop("OPENAI_API_KEY", None)
    started = time.perf_counter()
    model = await asyncio.to_thread(shared_chat_model, Settings(data_dir=data_dir))
    server_start = time.perf_counter() - started
    prompt = user_message(3, 0)
    started = time.perf_counter()
    first: float | None = None
    tokens = 0
    async for chunk in model.astream(prompt):
        if chunk.text:
            tokens += 1
            first = first if first is not None else time.perf_counter() - started
    total = time.perf_counter() - started
    return LocalResult(server_start, first if first is not None else total, total, tokens)
