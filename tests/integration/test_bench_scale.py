"""The scale-out bench's N-process driver and its measurements, on the real embedded Postgres (no timings)."""

from __future__ import annotations

import asyncio
from pathlib import Path

import psycopg

from bench.cpu import postgres_cpu, postmaster_pid
from bench.processes import prepare_database, run_workers
from bench.scale_out import markdown, scale_run, verdict


def test_n_worker_processes_each_drive_their_conversations(
    postgres_root: tuple[Path, str], database_url: str
) -> None:
    data_dir, _ = postgres_root
    asyncio.run(prepare_database("convomem", database_url, data_dir))
    released: list[bool] = []
    run = run_workers(
        "convomem",
        database_url,
        data_dir,
        processes=2,
        threads=2,
        turns=2,
        on_release=lambda: released.append(True),
    )
    assert released == [True]
    assert len(run.latencies) == 2 * 2 * 2 and all(latency > 0 for latency in run.latencies)
    assert len(set(run.pids)) == 2 and run.worker_cpu > 0
    with psycopg.connect(database_url) as conn:
        threads = conn.execute("SELECT DISTINCT thread_id FROM checkpoints ORDER BY thread_id").fetchall()
    assert [row[0] for row in threads] == ["p1-t0", "p1-t1", "p2-t0", "p2-t1"]


def test_a_scale_run_counts_transactions_and_postgres_cpu(postgres_root: tuple[Path, str]) -> None:
    data_dir, root_url = postgres_root
    assert postgres_cpu(postmaster_pid(root_url)) > 0
    result = scale_run(root_url, data_dir, "direct", processes=1, threads=2, turns=1)
    assert result.turns == 2
    assert result.transactions >= 2 * 10  # a convomem turn is tens of transactions
    assert result.postgres_cpu > 0 and result.run.worker_cpu > 0
    assert result.pgbouncer_cpu == 0
    table = markdown([result]).splitlines()
    assert len(table) == 3 and table[2].startswith("| direct | 1 | 2 x 1 |")
    assert "turns/s whatever the process count" in verdict([result], cores=2)
