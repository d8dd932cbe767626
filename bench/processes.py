"""N worker processes (bench.worker) driving one variant on one database, released together.

Used by the concurrency bench (bench/suite.py, 2 processes) and the scale-out bench (bench/scale_out.py,
1, 2 and 4 processes, directly and through PgBouncer).
"""

from __future__ import annotations

import json
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from bench.drivers import Variant, open_driver

__all__ = ["WorkerRun", "prepare_database", "run_workers"]

REPO = Path(__file__).resolve().parents[1]


@dataclass(frozen=True)
class WorkerRun:
    latencies: list[float]
    """Every turn's latency (s), from every worker."""
    seconds: float
    """From the release of the workers to the last one's report."""
    worker_cpu: float
    """CPU seconds (user + system) the workers spent driving their conversations, summed."""
    pids: tuple[int, ...]


async def prepare_database(variant: Variant, url: str, data_dir: Path) -> None:
    """Set the variant's tables up once: processes running the first setup at once collide in upstream's
    migrations (duplicate key in checkpoint_migrations)."""
    async with open_driver(variant, url, data_dir):
        pass


def run_workers(
    variant: Variant,
    url: str,
    data_dir: Path,
    *,
    processes: int,
    threads: int,
    turns: int,
    on_release: Callable[[], None] = lambda: None,
) -> WorkerRun:
    """`processes` workers, each driving `threads` conversations of `turns` turns on database `url`.

    They are released together once all have opened their connections, so start-up is not counted;
    `on_release` runs just before (a caller's measurement window starts there)."""
    command = [sys.executable, "-m", "bench.worker", variant, url, str(data_dir), str(threads), str(turns)]
    workers = [
        subprocess.Popen(
            [*command, f"p{n}"], cwd=REPO, stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True
        )
        for n in range(1, processes + 1)
    ]
    try:
        for worker in workers:
            assert worker.stdout is not None
            if worker.stdout.readline().strip() != "ready":
                raise RuntimeError(f"a {variant} worker failed to start (exit {worker.wait()})")
        on_release()
        started = time.perf_counter()
        for worker in workers:
            assert worker.stdin is not None
            worker.stdin.write("go\n")
            worker.stdin.flush()
        latencies: list[float] = []
        cpu = 0.0
        for worker in workers:
            out, _ = worker.communicate()
            if worker.returncode != 0:
                raise RuntimeError(f"a {variant} worker failed (exit {worker.returncode})")
            report = json.loads(out.strip().splitlines()[-1])
            latencies.extend(report["latencies"])
            cpu += report["cpu"]
        seconds = time.perf_counter() - started
    finally:
        for worker in workers:
            if worker.poll() is None:
                worker.kill()
                worker.wait()
    return WorkerRun(latencies, seconds, cpu, tuple(w.pid for w in workers))
