"""Retention: prune the checkpoints of idle threads, once (`convomem db prune`) or periodically.

A thread waiting on an interrupt or being run is never touched. Each thread is measured, pruned and
measured again in one transaction that holds the thread's run lock, so a dry run is the real prune rolled
back: its numbers are exact, and a run cannot start on a thread while it is being pruned.
"""

from __future__ import annotations

import asyncio
import functools
import logging
import re
import uuid
from collections.abc import Callable, Coroutine
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any, Literal, get_args

from langgraph.checkpoint.serde.types import INTERRUPT
from psycopg import DataError, IntegrityError, InternalError, Rollback, errors

from checkpoint.connections import Conn, Pool
from checkpoint.locks import is_thread_busy, try_thread_lock_in_transaction
from checkpoint.run_records import delete_run_records_before
from checkpoint.saver import ConvomemSaver
from nodes.errors import ConfigError, InvalidInput

__all__ = [
    "STRATEGIES",
    "PruneReport",
    "PruneSweeper",
    "Strategy",
    "ThreadPruned",
    "ThreadSkipped",
    "parse_duration",
    "prune_threads",
    "sweep_forever",
]

Strategy = Literal["keep_latest", "delete"]
STRATEGIES: tuple[str, ...] = get_args(Strategy)
SkipReason = Literal["running", "interrupt", "error"]
MAX_DURATION = timedelta(days=36500)
UUID_EPOCH = datetime(1582, 10, 15, tzinfo=UTC)
_log = logging.getLogger("convomem.retention")

_UNIT_SECONDS = {"s": 1, "m": 60, "h": 3600, "d": 86400, "w": 604800}
_DURATION = re.compile(r"(?:\d{1,9}[smhdw])+")
_DURATION_PART = re.compile(r"(\d+)([smhdw])")

# Checkpoint ids are uuid6, so text order is time order (upstream's get_tuple relies on it): comparing
# the newest id with the cutoff's id needs no parsing of possibly corrupted timestamps. keep_latest
# skips threads with nothing to drop (one checkpoint per namespace), so a sweep does not revisit them.
CANDIDATES_SQL = """
    SELECT thread_id FROM checkpoints GROUP BY thread_id
    HAVING max(checkpoint_id COLLATE "C") < %(cutoff)s
    AND (%(everything)s OR count(*) > count(DISTINCT checkpoint_ns))
    ORDER BY thread_id
"""
WAITING_SQL = """
    SELECT EXISTS (
        SELECT 1 FROM (
            SELECT DISTINCT ON (checkpoint_ns) checkpoint_ns, checkpoint_id
            FROM checkpoints WHERE thread_id = %(thread)s
            ORDER BY checkpoint_ns, checkpoint_id DESC
        ) AS head
        JOIN checkpoint_writes w ON w.thread_id = %(thread)s
            AND w.checkpoint_ns = head.checkpoint_ns AND w.checkpoint_id = head.checkpoint_id
        WHERE w.channel = %(channel)s
    ) AS waiting
"""
FOOTPRINT_SQL = """
    SELECT (SELECT count(*) FROM checkpoints WHERE thread_id = %(thread)s) AS checkpoints,
        (SELECT coalesce(sum(pg_column_size(c.*)), 0) FROM checkpoints c WHERE thread_id = %(thread)s)
        + (SELECT coalesce(sum(pg_column_size(w.*)), 0) FROM checkpoint_writes w WHERE thread_id = %(thread)s)
        + (SELECT coalesce(sum(pg_column_size(b.*)), 0) FROM checkpoint_blobs b WHERE thread_id = %(thread)s)
        AS bytes
"""
# Another transaction changed the thread (serialization failure, deadlock), a row upstream cannot read,
# or a thread upstream refuses (a LangGraph.js DeltaChannel): that thread is skipped, the others go on.
THREAD_ERRORS = (
    errors.TransactionRollback,
    DataError,
    IntegrityError,
    InternalError,
    NotImplementedError,
)


@dataclass(frozen=True)
class ThreadPruned:
    """What was (or, in a dry run, would be) removed from one thread."""

    thread_id: str
    checkpoints: int
    bytes: int


@dataclass(frozen=True)
class ThreadSkipped:
    thread_id: str
    reason: SkipReason
    detail: str = ""


@dataclass(frozen=True)
class PruneReport:
    cutoff: datetime
    strategy: Strategy
    dry_run: bool
    examined: int = 0
    pruned: tuple[ThreadPruned, ...] = ()
    skipped: tuple[ThreadSkipped, ...] = ()
    run_records: int = 0
    """Run records of runs started before the cutoff, removed (or, in a dry run, that would be)."""

    @property
    def checkpoints(self) -> int:
        return sum(thread.checkpoints for thread in self.pruned)

    @property
    def bytes(self) -> int:
        return sum(thread.bytes for thread in self.pruned)


def parse_duration(text: str) -> timedelta:
    """ "30d", "12h", "90m", "2w", "45s" or combinations ("1w3d"): a positive age up to 100 years."""
    cleaned = text.strip().lower().replace(" ", "")
    if not _DURATION.fullmatch(cleaned):
        raise InvalidInput(
            f"Invalid duration {text[:40]!r}: use a whole number and a unit, e.g. 90m, 12h, 30d or 2w "
            "(units s, m, h, d, w; combine them as in 1w3d)."
        )
    seconds = sum(int(number) * _UNIT_SECONDS[unit] for number, unit in _DURATION_PART.findall(cleaned))
    if seconds == 0:
        raise InvalidInput(f"Invalid duration {text!r}: it must be longer than zero (e.g. 30d).")
    if seconds > MAX_DURATION.total_seconds():
        raise InvalidInput(f"Invalid duration {text[:40]!r}: at most {MAX_DURATION.days} days.")
    return timedelta(seconds=seconds)


def cutoff_checkpoint_id(cutoff: datetime) -> str:
    """The smallest uuid6 of `cutoff`'s 100-ns tick: ids below it were made before the cutoff."""
    ticks = (cutoff - UUID_EPOCH) // timedelta(microseconds=1) * 10
    value = ((ticks >> 12) & 0xFFFF_FFFF_FFFF) << 80 | 0x6 << 76 | (ticks & 0x0FFF) << 64 | 0x8 << 60
    return str(uuid.UUID(int=value))


async def prune_threads(
    pool: Pool,
    saver: ConvomemSaver,
    *,
    older_than: timedelta,
    strategy: Strategy,
    dry_run: bool,
    now: datetime | None = None,
) -> PruneReport:
    """Prune every thread whose newest checkpoint is older than `older_than`.

    `keep_latest` keeps each namespace's latest checkpoint (and what a DeltaChannel needs to rebuild it),
    so the thread loads and continues as before; `delete` removes the thread's checkpoints entirely (the
    transcript keeps the conversation). Threads with a pending interrupt or a running run are skipped.
    Run records of runs started before the cutoff go too (all users'), whatever the strategy.
    `dry_run` reports exactly what would go and changes nothing.
    """
    if strategy not in STRATEGIES:
        raise InvalidInput(f"Unknown prune strategy {strategy!r}: use keep_latest or delete.")
    cutoff = _cutoff((now or datetime.now(UTC)).astimezone(UTC), older_than)
    threads = await _candidates(pool, cutoff, everything=strategy == "delete")
    pruned: list[ThreadPruned] = []
    skipped: list[ThreadSkipped] = []
    for thread_id in threads:
        outcome = await _prune_thread(pool, saver, thread_id, strategy, dry_run)
        if isinstance(outcome, ThreadSkipped):
            skipped.append(outcome)
        elif outcome.checkpoints or outcome.bytes:
            pruned.append(outcome)
    records = await delete_run_records_before(pool, cutoff, dry_run=dry_run)
    report = PruneReport(cutoff, strategy, dry_run, len(threads), tuple(pruned), tuple(skipped), records)
    _log.info(
        "%s%s: %d threads, %d checkpoints, %d bytes (%d skipped), %d run records",
        "dry run of " if dry_run else "",
        strategy,
        len(pruned),
        report.checkpoints,
        report.bytes,
        len(skipped),
        records,
    )
    return report


def _cutoff(now: datetime, older_than: timedelta) -> datetime:
    if older_than <= timedelta(0) or older_than > MAX_DURATION:
        raise InvalidInput(f"older_than must be between zero and {MAX_DURATION.days} days, not {older_than}.")
    return now - older_than


async def _candidates(pool: Pool, cutoff: datetime, *, everything: bool) -> list[str]:
    params = {"cutoff": cutoff_checkpoint_id(cutoff), "everything": everything}
    try:
        async with pool.connection() as conn:
            rows = await (await conn.execute(CANDIDATES_SQL, params)).fetchall()
    except errors.UndefinedTable as error:
        raise ConfigError(
            "This database has no checkpoint tables: run `convomem db setup` (or check DATABASE_URL)."
        ) from error
    return [row["thread_id"] for row in rows]


async def _prune_thread(
    pool: Pool, saver: ConvomemSaver, thread_id: str, strategy: Strategy, dry_run: bool
) -> ThreadPruned | ThreadSkipped:
    if await is_thread_busy(pool, thread_id):
        return ThreadSkipped(thread_id, "running")
    try:
        async with pool.connection() as conn, conn.transaction() as tx:
            # Upstream's prune opens its own REPEATABLE READ (as a savepoint here): the same level is allowed.
            # Upstream details: that level (the private `_keep_latest`), and `bound_to` running the prune on
            # this connection through the private `_cursor()`; pinned by
            # tests/unit/test_upstream_pins.py::test_keep_latest_reads_one_repeatable_read_snapshot and
            # tests/integration/test_upstream_pins.py::test_cursor_gives_dict_rows_on_the_bound_connection.
            await conn.execute("SET TRANSACTION ISOLATION LEVEL REPEATABLE READ")
            if not await try_thread_lock_in_transaction(conn, thread_id):
                return ThreadSkipped(thread_id, "running")
            if await _waits_on_interrupt(conn, thread_id):
                return ThreadSkipped(thread_id, "interrupt")
            before = await _footprint(conn, thread_id)
            await saver.bound_to(conn).aprune([thread_id], strategy=strategy)
            after = await _footprint(conn, thread_id)
            outcome = ThreadPruned(thread_id, before[0] - after[0], max(before[1] - after[1], 0))
            if dry_run:
                raise Rollback(tx)
    except THREAD_ERRORS as error:
        _log.warning("prune of thread %r skipped: %s", thread_id, error)
        return ThreadSkipped(thread_id, "error", str(error).strip().splitlines()[0] if str(error) else "")
    return outcome


async def _waits_on_interrupt(conn: Conn, thread_id: str) -> bool:
    """An `interrupt()` not answered yet: its write sits on the latest checkpoint of some namespace."""
    row = await (await conn.execute(WAITING_SQL, {"thread": thread_id, "channel": INTERRUPT})).fetchone()
    return bool(row and row["waiting"])


async def _footprint(conn: Conn, thread_id: str) -> tuple[int, int]:
    """(checkpoints, bytes) the thread holds across checkpoints, writes and blobs."""
    row = await (await conn.execute(FOOTPRINT_SQL, {"thread": thread_id})).fetchone()
    return (int(row["checkpoints"]), int(row["bytes"])) if row else (0, 0)


async def sweep_forever(
    pool: Pool,
    saver: ConvomemSaver,
    *,
    older_than: timedelta,
    strategy: Strategy = "keep_latest",
    interval: timedelta = timedelta(hours=1),
    on_report: Callable[[PruneReport], None] | None = None,
) -> None:
    """Prune now and then every `interval`, until cancelled. A failed sweep (Postgres restarting, say) is
    logged and tried again next time: a long-running process must not lose its sweeper to one error."""
    _check_schedule(older_than, interval)
    while True:
        try:
            report = await prune_threads(pool, saver, older_than=older_than, strategy=strategy, dry_run=False)
        except Exception:
            _log.exception("retention sweep failed; next attempt in %s", interval)
        else:
            if on_report is not None:
                on_report(report)
        await asyncio.sleep(interval.total_seconds())


def _check_schedule(older_than: timedelta, interval: timedelta) -> None:
    """Refuse a nonsense schedule once, up front, rather than in every sweep's log."""
    if interval <= timedelta(0):
        raise InvalidInput(f"The sweep interval must be positive, not {interval}.")
    _cutoff(datetime.now(UTC), older_than)


class PruneSweeper:
    """`sweep_forever` as a background task of a long-running process (server, worker)."""

    def __init__(
        self,
        pool: Pool,
        saver: ConvomemSaver,
        *,
        older_than: timedelta,
        strategy: Strategy = "keep_latest",
        interval: timedelta = timedelta(hours=1),
        on_report: Callable[[PruneReport], None] | None = None,
    ) -> None:
        _check_schedule(older_than, interval)  # in the caller, not in a task nobody awaits
        self._sweep: Callable[[], Coroutine[Any, Any, None]] = functools.partial(
            sweep_forever,
            pool,
            saver,
            older_than=older_than,
            strategy=strategy,
            interval=interval,
            on_report=on_report,
        )
        self._task: asyncio.Task[None] | None = None

    @property
    def running(self) -> bool:
        return self._task is not None and not self._task.done()

    def start(self) -> None:
        """Start sweeping in the running event loop (a no-op when already started)."""
        if not self.running:
            self._task = asyncio.create_task(self._sweep(), name="convomem-retention-sweeper")

    async def stop(self) -> None:
        """Cancel the sweeper and wait for it: a prune in progress rolls back its current thread."""
        task, self._task = self._task, None
        if task is not None:
            task.cancel()
            await asyncio.gather(task, return_exceptions=True)

    async def __aenter__(self) -> PruneSweeper:
        self.start()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.stop()
