"""`python -m bench.run_records [--runs 500]`: what run records cost, on the embedded Postgres.

Per turn, recording adds one INSERT (measured here), one read of the thread's state after the run to
tell a finished run from an interrupted one (measured here on a real checkpoint), and in-process callback
bookkeeping (measured here on synthetic callbacks). Also times the `convomem ops` window query over the
rows written. Prints one JSON document; timings in milliseconds.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import statistics
import tempfile
import time
import uuid
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from langchain_core.messages import AIMessage, HumanMessage
from langchain_core.outputs import ChatGeneration, LLMResult

from bench.db import create_database
from checkpoint.embedded import start_embedded, stop_embedded
from checkpoint.persistence import open_persistence
from checkpoint.run_records import RunRecord, read_window, write_run_record
from graphs.run_recording import RunObserver

__all__ = ["main"]


def _summary(samples: list[float]) -> dict[str, float]:
    ordered = sorted(samples)
    return {
        "median_ms": round(statistics.median(ordered) * 1000, 3),
        "p95_ms": round(ordered[int(0.95 * (len(ordered) - 1))] * 1000, 3),
    }


async def _timed(work: Callable[[], Awaitable[Any]], repeat: int) -> list[float]:
    samples = []
    for _ in range(repeat):
        started = time.perf_counter()
        await work()
        samples.append(time.perf_counter() - started)
    return samples


def _record(n: int, now: datetime) -> RunRecord:
    return RunRecord(
        run_id=str(uuid.uuid4()),
        thread_id=f"t{n % 20}",
        user_id=f"u{n % 5}",
        started_at=now - timedelta(seconds=n),
        ended_at=now,
        status="error" if n % 10 == 0 else "ok",
        duration_seconds=1.0 + n % 7,
        node_seconds={"load_memory": 0.01, "respond": 0.8, "extract_entities": 0.3, "reduce_history": 0.02},
        first_token_seconds=0.2,
        model_calls=2,
        input_tokens=500,
        output_tokens=80,
        error_class="ModelUnavailable" if n % 10 == 0 else None,
        error_message="The model server did not answer" if n % 10 == 0 else None,
    )


def _callbacks_of_one_turn(observer: RunObserver) -> None:
    """The callbacks a four-node turn with two model calls sends."""
    for step, node in enumerate(("load_memory", "respond", "extract_entities", "reduce_history")):
        run = uuid.uuid4()
        observer.on_chain_start({}, {}, run_id=run, tags=[f"graph:step:{step}"], metadata={
            "langgraph_node": node, "langgraph_checkpoint_ns": f"{node}:{run}"})  # fmt: skip
        if node in ("respond", "extract_entities"):
            model = uuid.uuid4()
            observer.on_chat_model_start(
                {}, [[HumanMessage("hi")]], run_id=model, metadata={"langgraph_node": node}
            )
            for _ in range(40):
                observer.on_llm_new_token("x", run_id=model)
            reply = AIMessage(
                "x" * 40, usage_metadata={"input_tokens": 9, "output_tokens": 40, "total_tokens": 49}
            )
            observer.on_llm_end(LLMResult(generations=[[ChatGeneration(message=reply)]]), run_id=model)
        observer.on_chain_end({}, run_id=run)


async def measure(url: str, runs: int) -> dict[str, Any]:
    async with open_persistence(url) as persistence:
        pool, saver = persistence.pool, persistence.checkpointer
        now = datetime.now(UTC)
        counter = iter(range(runs))
        inserts = await _timed(lambda: write_run_record(pool, _record(next(counter), now)), runs)
        window = await _timed(lambda: read_window(pool, now - timedelta(hours=1)), 20)
        config: Any = {"configurable": {"thread_id": "bench", "checkpoint_ns": ""}}
        checkpoint = {"v": 1, "id": str(uuid.uuid4()), "ts": now.isoformat(), "channel_values": {},
                      "channel_versions": {}, "versions_seen": {}, "pending_sends": []}  # fmt: skip
        await saver.aput(config, checkpoint, {}, {})  # type: ignore[arg-type]
        state_reads = await _timed(lambda: saver.aget_tuple(config), runs)
    bookkeeping = []
    for _ in range(runs):
        started = time.perf_counter()
        _callbacks_of_one_turn(RunObserver(time.monotonic))
        bookkeeping.append(time.perf_counter() - started)
    return {
        "runs": runs,
        "insert": _summary(inserts),
        "state_read_after_run": _summary(state_reads),
        "callback_bookkeeping_per_turn": _summary(bookkeeping),
        "ops_window_query": {**_summary(window), "rows": runs},
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--runs", type=int, default=500)
    args = parser.parse_args()
    data_dir = Path(tempfile.mkdtemp(prefix="convomem-bench-runs-"))
    try:
        url = create_database(start_embedded(data_dir), "bench_run_records")
        print(json.dumps(asyncio.run(measure(url, args.runs)), indent=2))
    finally:
        stop_embedded(data_dir)


if __name__ == "__main__":
    main()
