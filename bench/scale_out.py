"""`python -m bench.scale_out` (`make bench-scale`): convomem in 1, 2 and 4 processes on one Postgres.

Each worker process drives the same conversations (THREADS at once, TURNS turns each), on one embedded
Postgres, directly and through PgBouncer in transaction mode. Per configuration: turns/s, p50/p99 turn
latency, Postgres transactions per second (xact_commit over the timed window), and the CPU the Postgres
server, PgBouncer and the workers used in that window, with the machine's whole CPU use and how many
server sessions were waiting on locks, so the report says what saturates first. Writes
bench/results/scale_out.md. Not part of `make bench`: it is about the deployment, not a turn's cost.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import shutil
import sys
import tempfile
import time
from collections.abc import Sequence
from contextlib import nullcontext
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

from psycopg.conninfo import conninfo_to_dict

from bench.cpu import Activity, ActivitySampler, machine_busy, postgres_cpu, postmaster_pid, process_cpu
from bench.db import committed_transactions, create_database
from bench.pgbouncer import PgBouncer, pgbouncer
from bench.processes import WorkerRun, prepare_database, run_workers
from bench.suite import percentile, progress
from checkpoint.embedded import start_embedded, stop_embedded

__all__ = ["ScaleResult", "main", "markdown", "scale_run", "verdict"]

Mode = Literal["direct", "pgbouncer"]
VARIANT = "convomem"
"""The bench's convomem variant: no tools, like the baselines (bench/drivers.py)."""
THREADS = 8
TURNS = 6
PROCESSES = (1, 2, 4)
STATS_SETTLE_S = 0.5
"""Closed sessions flush their statistics as they exit; this lets them land before xact_commit is read."""


@dataclass(frozen=True)
class ScaleResult:
    mode: Mode
    processes: int
    threads: int
    """Conversations at once per process."""
    run: WorkerRun
    transactions: int
    postgres_cpu: float
    pgbouncer_cpu: float
    machine_cpu: float
    """Every process of the machine, other users' included (the machine is shared)."""
    activity: Activity

    @property
    def turns(self) -> int:
        return len(self.run.latencies)

    def per_s(self, amount: float) -> float:
        return amount / self.run.seconds

    def cpu_per_turn(self) -> tuple[float, float]:
        """CPU seconds a turn cost: in the workers, and in Postgres with PgBouncer."""
        return self.run.worker_cpu / self.turns, (self.postgres_cpu + self.pgbouncer_cpu) / self.turns

    def _cpu(self, seconds: float) -> str:
        return f"{self.per_s(seconds):.2f} ({seconds / self.turns * 1000:.0f})"

    def row(self) -> list[str]:
        a, ms = self.activity, 1000
        return [
            self.mode,
            str(self.processes),
            f"{self.processes * self.threads} x {self.turns // (self.processes * self.threads)}",
            f"{self.per_s(self.turns):.1f}",
            f"{percentile(self.run.latencies, 50) * ms:.0f}",
            f"{percentile(self.run.latencies, 99) * ms:.0f}",
            f"{self.per_s(self.transactions):.0f}",
            f"{self.transactions / self.turns:.1f}",
            self._cpu(self.run.worker_cpu),
            self._cpu(self.postgres_cpu),
            self._cpu(self.pgbouncer_cpu) if self.mode == "pgbouncer" else "-",
            f"{self.per_s(self.machine_cpu):.2f}",
            f"{a.mean(a.active):.1f} / {a.mean(a.sessions):.0f} ({a.max_sessions})",
            f"{a.mean(a.lock):.2f} / {a.mean(a.lwlock):.2f} / {a.mean(a.io):.2f}",
        ]


HEADER = [
    "path",
    "processes",
    "conversations x turns",
    "turns/s",
    "p50 ms",
    "p99 ms",
    "Postgres tx/s",
    "tx/turn",
    "workers CPU, cores (ms/turn)",
    "Postgres CPU, cores (ms/turn)",
    "PgBouncer CPU, cores (ms/turn)",
    "machine CPU (cores, all users)",
    "sessions active / open (max)",
    "waiting on Lock / LWLock / IO",
]


def markdown(results: Sequence[ScaleResult]) -> str:
    lines = ["| " + " | ".join(HEADER) + " |", "|" + "---|" * len(HEADER)]
    lines += ["| " + " | ".join(r.row()) + " |" for r in results]
    return "\n".join(lines)


def verdict(results: Sequence[ScaleResult], cores: int) -> str:
    """What the CPU a turn costs says: each side's share, and the turns/s all the cores would give."""
    turns = sum(r.turns for r in results)
    workers = sum(r.run.worker_cpu for r in results) / turns
    server = sum(r.postgres_cpu + r.pgbouncer_cpu for r in results) / turns
    busy = min(r.per_s(r.machine_cpu) for r in results) / cores
    locks = max(r.activity.mean(r.activity.lock) for r in results)
    return (
        f"Over all {turns} turns a turn cost {workers * 1000:.0f} ms of worker CPU (Python) and "
        f"{server * 1000:.0f} ms of Postgres (+ PgBouncer) CPU: the workers take "
        f"{workers / (workers + server):.0%} of the CPU. With all {cores} cores to itself, this workload "
        f"would top out near {cores / (workers + server):.0f} turns/s whatever the process count. "
        f"The machine was at least {busy:.0%} busy in every configuration (other users included); at most "
        f"{locks:.2f} sessions waited on a heavyweight lock on average."
    )


class Window:
    """The CPU of the Postgres server, PgBouncer and the machine, the database's committed transactions and
    its sessions' activity, from start() (the workers' release) to stop()."""

    def __init__(self, root_url: str, url: str, bouncer: PgBouncer | None):
        self.url = url
        self.postmaster = postmaster_pid(root_url)
        self.bouncer = bouncer
        self.sampler = ActivitySampler(root_url, str(conninfo_to_dict(url)["dbname"]))
        self.before: tuple[float, float, float] = (0.0, 0.0, 0.0)
        self.transactions = 0

    def _cpu(self) -> tuple[float, float, float]:
        bouncer = process_cpu(self.bouncer.pid) if self.bouncer else 0.0
        return postgres_cpu(self.postmaster), bouncer, machine_busy()[0]

    def start(self) -> None:
        self.transactions = committed_transactions(self.url)
        self.before = self._cpu()
        self.sampler.start()

    def stop(self) -> tuple[tuple[float, float, float], Activity]:
        after = self._cpu()
        activity = self.sampler.stop()
        return (after[0] - self.before[0], after[1] - self.before[1], after[2] - self.before[2]), activity


def scale_run(
    root_url: str, data_dir: Path, mode: Mode, processes: int, threads: int, turns: int
) -> ScaleResult:
    """One configuration on a fresh database. Through PgBouncer, its pool has a server connection per
    conversation plus 10: each running turn keeps its thread's lock in a transaction (checkpoint/locks.py),
    which holds one server connection in transaction mode too, and the turn's own queries need more."""
    url = create_database(root_url, f"bench_scale_{mode}_{processes}")
    asyncio.run(prepare_database(VARIANT, url, data_dir))
    dbname = str(conninfo_to_dict(url)["dbname"])
    with (
        pgbouncer(root_url, data_dir / f"pgbouncer-{processes}", pool_size=processes * threads + 10)
        if mode == "pgbouncer"
        else nullcontext()
    ) as bouncer:
        window = Window(root_url, url, bouncer)
        run = run_workers(
            VARIANT,
            bouncer.url(dbname) if bouncer else url,
            data_dir,
            processes=processes,
            threads=threads,
            turns=turns,
            on_release=window.start,
        )
        (postgres, pgbouncer_cpu, machine), activity = window.stop()
    time.sleep(STATS_SETTLE_S)  # PgBouncer stopped: its server sessions closed and flushed their counts
    transactions = committed_transactions(url) - window.transactions
    return ScaleResult(
        mode, processes, threads, run, transactions, postgres, pgbouncer_cpu, machine, activity
    )


def run(modes: Sequence[Mode], processes: Sequence[int], threads: int, turns: int, out: Path) -> str:
    started = time.monotonic()
    data_dir = Path(tempfile.mkdtemp(prefix="convomem-scale-"))
    results: list[ScaleResult] = []
    load = " / ".join(f"{v:.1f}" for v in os.getloadavg())
    try:
        root = start_embedded(data_dir)
        for mode in modes:
            for n in processes:
                progress(f"{mode}: {n} process(es) x {threads} conversations x {turns} turns")
                result = scale_run(root, data_dir, mode, n, threads, turns)
                progress(
                    "  " + ", ".join(f"{h}: {v}" for h, v in zip(HEADER[3:], result.row()[3:], strict=True))
                )
                results.append(result)
    finally:
        stop_embedded(data_dir)
        shutil.rmtree(data_dir, ignore_errors=True)
    table = markdown(results)
    text = "\n".join(
        [
            "# convomem scale-out",
            "",
            f"Run: `python -m bench.scale_out` on {time.strftime('%Y-%m-%d %H:%M')}, "
            f"{(time.monotonic() - started) / 60:.1f} min; {os.cpu_count()} cores, load average at start "
            f"{load}, at end {' / '.join(f'{v:.1f}' for v in os.getloadavg())}. Fake model: in-process, "
            "instant. One embedded Postgres; each configuration on a fresh database.",
            "",
            "CPU columns are cores in use over the timed window (CPU seconds / wall seconds): the workers' "
            "own time, the Postgres server's (every backend and background process), PgBouncer's, and the "
            "whole machine's, other users' processes included. Sessions: the database's server sessions "
            "sampled every 0.1 s (running a statement / open, max open); the last column is how many of "
            "the running ones wait on a heavyweight lock, an internal lock, or I/O, on average.",
            "",
            table,
            "",
            "Commonest wait events of running sessions (mean sessions in each):",
            "",
            *(f"- {r.mode}, {r.processes} process(es): {r.activity.top_waits()}" for r in results),
            "",
            verdict(results, os.cpu_count() or 1),
            "",
        ]
    )
    out.mkdir(parents=True, exist_ok=True)
    (out / "scale_out.md").write_text(text)
    print(table, flush=True)
    print(verdict(results, os.cpu_count() or 1), flush=True)
    progress(f"report: {out / 'scale_out.md'}")
    return text


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.scale_out", description=__doc__)
    parser.add_argument("--processes", default=",".join(map(str, PROCESSES)), help="e.g. 1,2,4")
    parser.add_argument("--threads", type=int, default=THREADS, help="conversations at once per process")
    parser.add_argument("--turns", type=int, default=TURNS, help="turns per conversation")
    parser.add_argument("--direct-only", action="store_true", help="skip the PgBouncer runs")
    parser.add_argument("--out", type=Path, default=Path("bench/results"), help="results folder")
    args = parser.parse_args(argv)
    modes: tuple[Mode, ...] = ("direct",) if args.direct_only else ("direct", "pgbouncer")
    processes = [int(n) for n in args.processes.split(",")]
    run(modes, processes, args.threads, args.turns, args.out)
    return 0


if __name__ == "__main__":
    sys.exit(main())
