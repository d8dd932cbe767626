"""Where a convomem turn's Postgres transactions and round trips go, per graph node, counted by the client.

Every connection of convomem's two pools is swapped (pool.drain) for a counting one, whose cursors count,
per statement, the transactions and round trips it costs with autocommit: a statement outside a block is
one transaction and one round trip; a `transaction()` block is one transaction, its BEGIN and COMMIT and
each statement in it one round trip; a pipeline is one round trip and, outside a block, one transaction
per sync; `executemany` outside a pipeline runs as one pipeline. The pool's connection check (an empty
query on every checkout) is one transaction too (pg_stat_database's xact_commit counts it); it gets its
own column, charged to whoever took the connection. The server's own count over the same turns is
reported next to the total.

Each statement is charged to where it comes from:
- the graph node running it: LangGraph's run config (langchain-core's context variable) names it;
- store operations, which AsyncPostgresStore batches in a background task, to the nodes that queued them;
- the checkpointer's calls LangGraph makes between steps, by method (`aput`: the step's checkpoint;
  `aput_writes`: a node's writes, charged to that node's checkpoint row);
- anything else (the turn runner around the graph: thread lock, thread head, run records) to "around".
pg_stat_database's xact_commit (the length run's figure) counts on the server and is the reference total;
this table splits it.
"""

from __future__ import annotations

import asyncio
import sys
from collections import Counter
from collections.abc import AsyncIterator, Iterable, Sequence
from contextlib import asynccontextmanager
from contextvars import ContextVar
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from langchain_core.runnables.config import var_child_runnable_config
from langgraph.store.base import Op
from psycopg import AsyncConnection, AsyncCursor
from psycopg_pool import AsyncConnectionPool

from bench.db import committed_transactions, create_database
from bench.drivers import ConvomemDriver, open_driver
from bench.workload import user_message

__all__ = ["NodeCounts", "count_nodes"]

REPO = Path(__file__).resolve().parents[1]
CHARGED: ContextVar[str | None] = ContextVar("bench_charged", default=None)
SAVER_METHODS = ("aput_writes", "aput", "aget_tuple", "alist", "adelete_thread")
AROUND = "around the graph (turn runner)"
STATS_SETTLE_S = 1.0
THREAD = "bench-nodes"
USER = "bench-nodes-user"


@dataclass
class Tally:
    transactions: Counter[str]
    round_trips: Counter[str]
    checks: Counter[str]

    def add(self, where: str, transactions: int, round_trips: int, *, check: bool = False) -> None:
        self.transactions[where] += transactions
        self.round_trips[where] += round_trips
        self.checks[where] += check

    def clear(self) -> None:
        for counter in (self.transactions, self.round_trips, self.checks):
            counter.clear()


TALLY = Tally(Counter(), Counter(), Counter())


def _node() -> str | None:
    config = var_child_runnable_config.get()
    node = (config or {}).get("metadata", {}).get("langgraph_node")
    return str(node) if node else None


def _where(query: object) -> str:
    charged = CHARGED.get()
    if charged:
        return charged
    frame = sys._getframe(2)
    method: str | None = None
    path = ""
    caller = ""
    while frame is not None:  # the outermost saver method on the stack (ConvomemSaver calls super())
        if frame.f_code.co_name in SAVER_METHODS:
            method = frame.f_code.co_name
            path = str(frame.f_locals.get("task_path", ""))
        file = Path(frame.f_code.co_filename)
        if not caller and file.is_relative_to(REPO) and file.parent.name in ("graphs", "checkpoint"):
            caller = f"{file.parent.name}/{file.name} {frame.f_code.co_name}"
        frame = frame.f_back  # type: ignore[assignment]
    if method == "aput_writes":
        return f"{_path_node(path)}: checkpoint writes"
    if method is not None:
        return f"checkpointer {method}" + (f" ({caller})" if caller else "")
    return _node() or (f"{AROUND}: {caller}" if caller else AROUND)


def _path_node(path: str) -> str:
    """The node of a task path ("~__pregel_pull, respond"); a Send's pushed task names none: tools."""
    names = [part for part in path.split(", ") if part and not part.startswith("~") and not part.isdigit()]
    return names[0] if names else "tools"


class CountingCursor(AsyncCursor[Any]):
    async def execute(self, query: Any, params: Any = None, **kwargs: Any) -> Any:
        self.connection.count(query)  # type: ignore[attr-defined]
        return await super().execute(query, params, **kwargs)

    async def executemany(self, query: Any, params_seq: Any, **kwargs: Any) -> None:
        self.connection.count(query, batch=True)  # type: ignore[attr-defined]
        await super().executemany(query, params_seq, **kwargs)


class CountingConnection(AsyncConnection[Any]):
    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.cursor_factory = CountingCursor
        self.blocks = 0
        self.pipelines = 0

    def count(self, query: object, *, batch: bool = False) -> None:
        if self.pipelines:
            return  # charged at the pipeline's sync
        if query == "":  # the pool's check: an empty statement, a transaction like any other
            TALLY.add(_where(None), 1, 1, check=True)
            return
        TALLY.add(_where(query), 1 if self.blocks == 0 else 0, 1)
        del batch  # one pipeline: one round trip, one transaction outside a block

    @asynccontextmanager
    async def transaction(self, *args: Any, **kwargs: Any) -> AsyncIterator[Any]:  # type: ignore[override]
        outer = self.blocks == 0 and not self.pipelines
        if outer:
            TALLY.add(_where(None), 1, 2)  # BEGIN, COMMIT
        self.blocks += 1
        try:
            async with super().transaction(*args, **kwargs) as tx:
                yield tx
        finally:
            self.blocks -= 1

    @asynccontextmanager
    async def pipeline(self) -> AsyncIterator[Any]:  # type: ignore[override]
        if self.pipelines == 0:
            TALLY.add(_where(None), 1 if self.blocks == 0 else 0, 1)
        self.pipelines += 1
        try:
            async with super().pipeline() as pipe:
                yield pipe
        finally:
            self.pipelines -= 1


def _charge_store(store: Any) -> None:
    """Store batches are charged to the nodes whose operations they carry.

    Upstream detail: AsyncBatchedBaseStore queues (future, op) pairs with `put_nowait` on the private
    `_aqueue` its background task reads, and runs them through `abatch`; pinned by
    tests/unit/test_upstream_pins.py::test_store_batches_run_queued_ops_through_the_instance_abatch.
    """
    queue: asyncio.Queue[tuple[asyncio.Future[Any], Op]] = store._aqueue
    queued_by: dict[int, str] = {}
    put = queue.put_nowait

    def put_nowait(item: tuple[asyncio.Future[Any], Op]) -> None:
        queued_by[id(item[1])] = _node() or AROUND
        put(item)

    queue.put_nowait = put_nowait  # type: ignore[method-assign]
    run_batch = store.abatch

    async def abatch(ops: Iterable[Op]) -> Any:
        ops = list(ops)
        nodes = sorted({queued_by.pop(id(op), "") for op in ops} - {""})
        token = CHARGED.set(" + ".join(nodes) if nodes else None)
        try:
            return await run_batch(ops)
        finally:
            CHARGED.reset(token)

    store.abatch = abatch


async def _count_pool(pool: AsyncConnectionPool[Any]) -> None:
    pool.connection_class = CountingConnection
    await pool.drain()


@dataclass(frozen=True)
class NodeCounts:
    turns: int
    transactions: dict[str, float]
    round_trips: dict[str, float]
    checks: dict[str, float]
    """Of the round trips (and transactions), the pool's connection checks."""
    server_transactions: float
    """pg_stat_database's xact_commit over the counted turns, per turn (includes closing the pools)."""

    @property
    def total(self) -> tuple[float, float]:
        return sum(self.transactions.values()), sum(self.round_trips.values())

    def rows(self) -> list[tuple[str, float, float, float]]:
        """(where, transactions, round trips, connection checks; per turn), most transactions first."""
        keys = sorted(self.round_trips, key=lambda k: (-self.transactions.get(k, 0), -self.round_trips[k]))
        return [
            (k, self.transactions.get(k, 0.0), self.round_trips[k], self.checks.get(k, 0.0)) for k in keys
        ]


async def count_nodes(root_url: str, data_dir: Any, *, warm: int, turns: int) -> NodeCounts:
    """`warm` convomem turns uncounted, then `turns` counted, on a fresh database."""
    url = create_database(root_url, "bench_nodes")
    async with open_driver("convomem", url, data_dir) as driver:
        assert isinstance(driver, ConvomemDriver)
        await _run(driver, range(warm))
        persistence = driver.cm.persistence
        _charge_store(persistence.store)
        for pool in (persistence.pool, driver.cm.lock_pool):
            await _count_pool(pool)  # the warm-up's connections end, flushing their statistics
        await asyncio.sleep(STATS_SETTLE_S)
        before = committed_transactions(url)
        TALLY.clear()
        await _run(driver, range(warm, warm + turns))
    await asyncio.sleep(STATS_SETTLE_S)  # closed sessions flush their statistics as they exit
    server = committed_transactions(url) - before
    return NodeCounts(
        turns,
        {k: v / turns for k, v in TALLY.transactions.items()},
        {k: v / turns for k, v in TALLY.round_trips.items()},
        {k: v / turns for k, v in TALLY.checks.items()},
        server / turns,
    )


async def _run(driver: ConvomemDriver, turns: Sequence[int]) -> None:
    for turn in turns:
        await driver.turn(THREAD, USER, user_message(5, turn))


def _print(counts: NodeCounts) -> None:
    rows = sorted(counts.transactions.items(), key=lambda item: -item[1])
    print(f"{'where':<70} {'tx/turn':>8} {'trips':>7} {'checks':>7}")
    for where, transactions in rows:
        trips, checks = counts.round_trips.get(where, 0.0), counts.checks.get(where, 0.0)
        print(f"{where:<70} {transactions:>8.2f} {trips:>7.2f} {checks:>7.2f}")
    total = sum(counts.transactions.values())
    print(f"{'total (client side)':<70} {total:>8.2f}")
    print(f"server-counted transactions per turn: {counts.server_transactions:.2f}")


def main() -> None:
    """`python -m bench.node_counts [TURNS]`: where a convomem turn's Postgres work goes, per node."""
    import sys
    import tempfile
    from pathlib import Path

    from checkpoint.embedded import start_embedded, stop_embedded

    turns = int(sys.argv[1]) if len(sys.argv) > 1 else 20
    folder = Path(tempfile.mkdtemp(prefix="bench-nodes-"))
    root_url = start_embedded(folder / "pg")
    try:
        _print(asyncio.run(count_nodes(root_url, folder / "data", warm=5, turns=turns)))
    finally:
        stop_embedded(folder / "pg")


if __name__ == "__main__":
    main()
