"""One writer per thread across processes: Postgres advisory locks keyed by thread id, and stop requests."""

from __future__ import annotations

import asyncio
import hashlib
from collections.abc import AsyncGenerator, AsyncIterator, Callable
from contextlib import asynccontextmanager, suppress
from typing import Any, Literal, TypeVar

from psycopg import Error, OperationalError, errors, pq
from psycopg_pool import PoolTimeout

from checkpoint.connections import Conn, Pool
from checkpoint.metadata import RUN_ID_KEY
from checkpoint.on_busy import BUSY_TIMEOUT, OnBusy, check_on_busy
from checkpoint.pool import unreachable
from checkpoint.threads import RUN_HEAD_SQL, RunHead, run_head_of
from nodes.errors import InvalidInput, RunCancelled, ThreadBusy, TooManyRuns

__all__ = [
    "BUSY_TIMEOUT",
    "LOCK_NAMESPACE",
    "RUN_ID_KEY",
    "RUN_REQUESTS_DDL",
    "OnBusy",
    "StopAction",
    "ThreadWriter",
    "check_on_busy",
    "hold_thread",
    "is_thread_busy",
    "thread_lock_key",
    "try_thread_lock_in_transaction",
]

T = TypeVar("T")

StopAction = Literal["rollback", "interrupt"]

LOCK_NAMESPACE = 0x636D  # "cm": keeps our keys apart from other users of advisory locks
MAX_LOCK_TIMEOUT_MS = 2**31 - 1
"""Checkpoint metadata key naming the run that wrote it (LangGraph Server's; delete_for_runs uses it)."""
SETTLE_SECONDS = 1.0
POLL_SECONDS = 0.25
"""How often a running run looks for stop requests; the same query keeps its lock connection alive."""

RUN_REQUESTS_DDL = """
    CREATE TABLE IF NOT EXISTS convomem_run_requests (
        thread_id text NOT NULL,
        holder_pid integer NOT NULL,
        action text NOT NULL CHECK (action IN ('rollback', 'interrupt')),
        requested_at timestamptz NOT NULL DEFAULT clock_timestamp(),
        PRIMARY KEY (thread_id, holder_pid, action)
    )
"""
"""Stop requests from a newer message to the run that holds the thread, addressed by the server pid of
that run's lock session (a LISTEN would not be delivered inside the lock's transaction, nor through
PgBouncer in transaction mode; a row is read by the holder's poll either way)."""

_HELD = (
    "locktype = 'advisory' AND granted AND classid = %(namespace)s::oid "
    "AND objid = (%(key)s::int)::oid AND objsubid = 2 "
    "AND database = (SELECT oid FROM pg_database WHERE datname = current_database())"
)
"""pg_locks rows of the thread's run lock in this database (objsubid 2: the two-key form)."""
TRY_LOCK_SQL = "SELECT pg_try_advisory_xact_lock(%(namespace)s, %(key)s) AS held, pg_backend_pid() AS pid"
WAIT_LOCK_SQL = (
    "SELECT pg_advisory_xact_lock(%(namespace)s, %(key)s) IS NULL AS waited, pg_backend_pid() AS pid"
)
REQUEST_STOP_SQL = f"""
    INSERT INTO convomem_run_requests (thread_id, holder_pid, action)
    SELECT %(thread)s, pid, %(action)s FROM pg_locks WHERE {_HELD}
    ON CONFLICT (thread_id, holder_pid, action) DO UPDATE SET requested_at = EXCLUDED.requested_at
    RETURNING holder_pid
"""
POLL_SQL = """
    SELECT action FROM convomem_run_requests
    WHERE thread_id = %s AND holder_pid = %s AND requested_at >= now()
    ORDER BY action = 'rollback' DESC LIMIT 1
"""
"""A holder's look for stop requests. now() is its lock transaction's start: older rows were addressed to
an earlier session that had the same pid."""
NEWEST_SQL = f"""
    SELECT checkpoint_id, metadata ->> '{RUN_ID_KEY}' AS run_id FROM checkpoints
    WHERE thread_id = %s AND checkpoint_ns = '' ORDER BY checkpoint_id DESC LIMIT 1
"""
WITHDRAW_SQL = "DELETE FROM convomem_run_requests WHERE thread_id = %s AND holder_pid = ANY(%s)"


def thread_lock_key(thread_id: str) -> int:
    """A stable signed 32-bit key for the thread (pg_advisory_lock(int, int) with LOCK_NAMESPACE)."""
    digest = hashlib.blake2b(thread_id.encode(), digest_size=4).digest()
    return int.from_bytes(digest, "big", signed=True)


async def try_thread_lock_in_transaction(conn: Conn, thread_id: str) -> bool:
    """The thread's run lock until `conn`'s transaction ends, if free: a run starting meanwhile finds the
    thread busy. For maintenance (prune, forget) that must not race a turn."""
    row = await (
        await conn.execute(
            "SELECT pg_try_advisory_xact_lock(%s, %s) AS held", (LOCK_NAMESPACE, thread_lock_key(thread_id))
        )
    ).fetchone()
    return bool(row and row["held"])


def _lock_params(thread_id: str) -> dict[str, Any]:
    return {"namespace": LOCK_NAMESPACE, "key": thread_lock_key(thread_id), "thread": thread_id}


async def is_thread_busy(pool: Pool, thread_id: str) -> bool:
    """True while some session, in any process, holds the thread's run lock."""
    async with pool.connection() as conn:
        query = f"SELECT EXISTS (SELECT 1 FROM pg_locks WHERE {_HELD}) AS busy"
        row = await (await conn.execute(query, _lock_params(thread_id))).fetchone()
    return bool(row and row["busy"])


class ThreadWriter:
    """The lock that makes a run its thread's only writer, held on a lock-pool connection, and the channel
    through which newer messages stop the run: `stream()` ends at once on rollback, after the current
    step on interrupt. Created and closed by `hold_thread`."""

    def __init__(self, lock_pool: Pool, thread_id: str) -> None:
        self.thread_id = thread_id
        self.took_over: StopAction | None = None
        """Set when this run got the thread by stopping the run that held it: its leftovers are superseded."""
        self.lock_pid: int | None = None
        """Server pid of the session holding the lock: stop requests are addressed to it."""
        self._pool = lock_pool
        self._conn: Conn | None = None
        self._sessions: list[int] = []  # lock sessions whose stop requests are withdrawn at the end
        self._ours: tuple[str, str | None] | None = None
        self.head: RunHead | None = None
        """The thread's head as read with the lock (None: not read, as when the run waited for the lock)."""
        self._stop: StopAction | None = None
        self._failure: RunCancelled | None = None
        self._producer: asyncio.Task[None] | None = None
        self._closing = asyncio.Event()

    def start_run(self, run_id: str, head_id: str | None) -> None:
        """Name the run (its checkpoints' metadata run_id) and the head it starts from: should the lock's
        session die, the lock is taken again only if the thread's newest checkpoint is still one of these."""
        self._ours = (run_id, head_id)

    # -- the run's stream ---------------------------------------------------------------------------
    async def stream(
        self, source: AsyncGenerator[T, None], *, step_done: Callable[[T], bool]
    ) -> AsyncIterator[T]:
        """Re-yield `source`, consumed in a task that a stop request can cancel; `step_done(item)` marks
        the items after which the thread's state is saved, where an interrupt stops it cleanly.

        Raises RunCancelled when stopped; a stop request that comes after the graph finished changes nothing.
        """
        self._raise_if_stopped()
        queue: asyncio.Queue[tuple[T] | None] = asyncio.Queue()
        cut_short = asyncio.Event()
        existing = asyncio.all_tasks()
        producer = self._producer = asyncio.create_task(self._pump(source, queue, step_done, cut_short))
        try:
            while (item := await queue.get()) is not None:
                yield item[0]
        finally:
            producer.cancel()  # a no-op once it finished; on early exit it closes the graph's stream
            await asyncio.wait([producer])
            self._producer = None
        if producer.cancelled() or cut_short.is_set():
            await _settle(existing)
            self._raise_if_stopped()
        if not producer.cancelled() and (error := producer.exception()) is not None:
            raise error  # the run's own failure

    async def _pump(
        self,
        source: AsyncGenerator[T, None],
        queue: asyncio.Queue[tuple[T] | None],
        step_done: Callable[[T], bool],
        cut_short: asyncio.Event,
    ) -> None:
        try:
            async for item in source:
                queue.put_nowait((item,))
                if self._stop is not None and step_done(item):
                    cut_short.set()
                    return
        finally:
            try:
                await source.aclose()  # LangGraph flushes pending checkpoint writes, cancels running nodes
            finally:
                queue.put_nowait(None)

    def _request(self, action: StopAction) -> None:
        if self._stop != "rollback":
            self._stop = action
        if action == "rollback" and self._producer is not None:
            self._producer.cancel()

    def _lose_lock(self, error: Exception) -> None:
        """The lock is gone and could not be taken back: stop writing at once, keep what is saved."""
        self._failure = RunCancelled(
            f"Thread {self.thread_id!r}: the database session holding this run's lock failed ({error}) and "
            f"the lock could not be taken back; the run stopped and keeps its progress: continue it with "
            f"`convomem resume --thread {self.thread_id}`.",
            kept_progress=True,
        )
        if self._producer is not None:
            self._producer.cancel()

    def _raise_if_stopped(self) -> None:
        if self._failure is not None:
            raise self._failure
        if self._stop == "rollback":
            raise RunCancelled(
                f"Thread {self.thread_id!r}: a newer message rolled this run back (on-busy rollback); "
                "nothing of it was kept.",
                kept_progress=False,
            )
        if self._stop == "interrupt":
            raise RunCancelled(
                f"Thread {self.thread_id!r}: a newer message interrupted this run (on-busy interrupt); its "
                "progress is kept and the newer message goes on from it.",
                kept_progress=True,
            )

    # -- the lock -----------------------------------------------------------------------------------
    async def _connect(self) -> Conn:
        try:
            self._conn = await self._pool.getconn()
        except PoolTimeout as error:
            if (refusal := await unreachable(self._pool)) is not None:
                raise refusal from error
            raise TooManyRuns(
                f"This process already runs {self._pool.max_size} turns at once: wait for one to finish, or "
                "open convomem with a larger max_concurrent_runs."
            ) from error
        return self._conn

    async def _acquire(self, on_busy: OnBusy, busy_timeout: float) -> None:
        conn = await self._connect()
        if await self._try_lock(conn, read_head=True):
            return
        if on_busy == "reject":
            raise ThreadBusy(
                f"Thread {self.thread_id!r} is busy with another run: wait, or use "
                "--on-busy enqueue|rollback|interrupt."
            )
        params = _lock_params(self.thread_id)
        if on_busy != "enqueue":
            stopped = await conn.execute(REQUEST_STOP_SQL, {**params, "action": on_busy})
            holders = [row["holder_pid"] for row in await stopped.fetchall()]
            self._sessions.extend(holders)
            self.took_over = on_busy if holders else None
        await conn.execute("BEGIN")
        try:  # lock_timeout 0 would mean "wait forever": one millisecond is the shortest real wait
            timeout = f"{max(1, int(min(busy_timeout * 1000, MAX_LOCK_TIMEOUT_MS)))}ms"
            await conn.execute("SELECT set_config('lock_timeout', %s, true)", (timeout,))
            row = await (await conn.execute(WAIT_LOCK_SQL, params)).fetchone()
            await conn.execute("RESET lock_timeout")
        except errors.LockNotAvailable:
            raise ThreadBusy(
                f"Thread {self.thread_id!r} is still busy after {busy_timeout:g}s: try again later, or "
                "allow a longer --busy-timeout."
            ) from None
        assert row is not None
        self._hold(row["pid"])

    async def _try_lock(self, conn: Conn, *, read_head: bool = False) -> bool:
        """Begin the lock transaction and take the lock if it is free; else end the transaction.

        One round trip (a pipeline); with `read_head` the thread's head is read in it too, after the
        lock is taken (its statement starts after the lock's), so a run needs no read of its own."""
        params = _lock_params(self.thread_id)
        async with conn.pipeline():
            await conn.execute("BEGIN")
            lock = await conn.execute(TRY_LOCK_SQL, params)
            head = await conn.execute(RUN_HEAD_SQL, params) if read_head else None
        row = await lock.fetchone()
        if row and row["held"]:
            self._hold(row["pid"])
            self.head = run_head_of(await head.fetchall()) if head is not None else None
            return True
        await conn.execute("ROLLBACK")
        return False

    def _hold(self, pid: int) -> None:
        self.lock_pid = pid
        self._sessions.append(pid)

    async def _watch(self) -> None:
        """Poll for stop requests addressed to this lock session until the writer closes."""
        while not await _set_within(self._closing, POLL_SECONDS):
            try:
                assert self._conn is not None
                row = await (await self._conn.execute(POLL_SQL, (self.thread_id, self.lock_pid))).fetchone()
            except Error as error:
                if isinstance(error, OperationalError) and await self._retake():
                    continue
                self._lose_lock(error)
                return
            if row is not None:
                self._request(row["action"])

    async def _retake(self) -> bool:
        """The lock's session died, so Postgres freed the lock (a restart, pg_terminate_backend): take it
        again on a fresh connection, unless another writer touched the thread in between."""
        if self._ours is None:
            return False
        run_id, head_id = self._ours
        await self._release()
        try:
            conn = await self._connect()
            if not await self._try_lock(conn):
                return False
            newest = await (await conn.execute(NEWEST_SQL, (self.thread_id,))).fetchone()
            if newest is None:
                untouched = head_id is None
            else:
                untouched = newest["checkpoint_id"] == head_id or newest["run_id"] == run_id
            if not untouched:
                await conn.execute("ROLLBACK")
            return untouched
        except (Error, TooManyRuns):
            return False

    async def _release(self) -> None:
        """End the lock transaction (freeing the lock), withdraw the stop requests of our sessions, and
        hand the connection back; a broken one is discarded by the pool (its closed session holds nothing)."""
        conn, self._conn = self._conn, None
        if conn is None:
            return
        with suppress(Error):
            async with conn.pipeline():  # one round trip
                if conn.info.transaction_status != pq.TransactionStatus.IDLE:
                    await conn.execute("ROLLBACK")
                if self._sessions:
                    await conn.execute(WITHDRAW_SQL, (self.thread_id, self._sessions))
        await self._pool.putconn(conn)


async def _settle(existing: set[asyncio.Task[Any]]) -> None:
    """Give the tasks a stopped graph left behind a moment to finish: LangGraph records a cancelled node's
    error with a checkpoint write it starts after its own shutdown, which would otherwise land after a
    rollback deleted that checkpoint (an orphan row). Bounded: other runs' tasks in this process are
    new too."""
    stragglers = asyncio.all_tasks() - existing - {asyncio.current_task()}
    if stragglers:
        await asyncio.wait(stragglers, timeout=SETTLE_SECONDS)


async def _set_within(event: asyncio.Event, seconds: float) -> bool:
    try:
        await asyncio.wait_for(event.wait(), seconds)
    except TimeoutError:
        return False
    return True


@asynccontextmanager
async def hold_thread(
    lock_pool: Pool, thread_id: str, *, on_busy: OnBusy = "reject", busy_timeout: float = BUSY_TIMEOUT
) -> AsyncIterator[ThreadWriter]:
    """Be the thread's only writer, in every process, until the block ends.

    The lock is `pg_advisory_xact_lock` in a transaction kept open on a `lock_pool` connection for the
    whole run: unlike a session lock it stays on one server session through PgBouncer in transaction
    mode, and like one it is freed by Postgres when the holder's process dies. The run's own queries use
    the main pool, so held locks never starve them; `lock_pool`'s size bounds this process's concurrent
    runs. Busy thread: `reject` raises ThreadBusy; `enqueue` waits in Postgres's lock queue (first come,
    first served) up to `busy_timeout` seconds; `rollback` and `interrupt` first ask the holder to stop.
    """
    check_on_busy(on_busy)
    if not busy_timeout >= 0:  # NaN too
        raise InvalidInput(f"Busy timeout {busy_timeout!r} is negative: give seconds >= 0.")
    writer = ThreadWriter(lock_pool, thread_id)
    try:
        await writer._acquire(on_busy, busy_timeout)
        watcher = asyncio.create_task(writer._watch())
        try:
            yield writer
        finally:
            writer._closing.set()
            await asyncio.wait([watcher])
    finally:
        await writer._release()
