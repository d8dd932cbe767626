"""One process of the multi-process benches (bench/processes.py): opens its variant, waits for "go", runs.

`python -m bench.worker VARIANT URL DATA_DIR THREADS TURNS PREFIX`: prints "ready" once connected, reads
one line from stdin, then drives THREADS conversations of TURNS turns and prints, as one JSON line, their
latencies and the CPU seconds (user + system) this process spent on them.
"""

from __future__ import annotations

import asyncio
import json
import os
import sys
from pathlib import Path
from typing import cast

from bench.drivers import Variant, open_driver
from bench.suite import drive_threads

__all__ = ["main"]


def _cpu() -> float:
    times = os.times()
    return times.user + times.system


async def _run(variant: Variant, url: str, data_dir: Path, threads: int, turns: int, prefix: str) -> None:
    async with open_driver(variant, url, data_dir, concurrency=threads) as driver:
        print("ready", flush=True)
        await asyncio.to_thread(sys.stdin.readline)
        cpu = _cpu()
        latencies = await drive_threads(driver, prefix, threads, turns)
        cpu = _cpu() - cpu
    print(json.dumps({"latencies": latencies, "cpu": cpu}), flush=True)


def main(argv: list[str]) -> None:
    variant, url, data_dir, threads, turns, prefix = argv
    asyncio.run(_run(cast(Variant, variant), url, Path(data_dir), int(threads), int(turns), prefix))


if __name__ == "__main__":
    main(sys.argv[1:])
