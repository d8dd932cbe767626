"""Per-thread ordering of checkpoint saves: all upstream's saver-wide lock is needed for on a pool."""

from __future__ import annotations

import asyncio
import weakref
from collections.abc import Iterator
from contextlib import contextmanager
from contextvars import ContextVar
from types import TracebackType

__all__ = ["ThreadOrderLock", "saving_thread"]

_SAVING: ContextVar[str | None] = ContextVar("convomem_saving_thread", default=None)


@contextmanager
def saving_thread(thread_id: str) -> Iterator[None]:
    """Mark the saves made inside as belonging to `thread_id` (ThreadOrderLock orders them)."""
    token = _SAVING.set(thread_id)
    try:
        yield
    finally:
        _SAVING.reset(token)


class ThreadOrderLock:
    """Stands in for AsyncPostgresSaver's `self.lock` when the saver runs on a pool.

    Upstream takes one asyncio.Lock around every query of a saver. One shared connection needs that; a
    pool does not, and there the lock only queues every thread's turns behind each other (bench/:
    1.2-1.4x the turns/s without it). What it also gave is an order: one thread's saves reach Postgres
    in the order they took the lock. Saves marked with `saving_thread` keep exactly that order per
    thread (FIFO, taken at the point upstream takes its lock), so a thread sees the same save ordering
    as under upstream; reads and other threads run at once. Locks of idle threads are dropped.

    Upstream detail: `self.lock` is entered only as `async with` in the private `_cursor()`, in the saving
    task; pinned by
    tests/unit/test_upstream_pins.py::test_saver_lock_is_an_asyncio_lock_only_entered_by_cursor and
    tests/integration/test_upstream_pins.py::test_saves_enter_the_saver_lock_in_the_saving_task.
    """

    def __init__(self) -> None:
        self._locks: weakref.WeakValueDictionary[str, asyncio.Lock] = weakref.WeakValueDictionary()
        self._held: dict[asyncio.Task[object] | None, asyncio.Lock] = {}

    async def __aenter__(self) -> None:
        thread_id = _SAVING.get()
        if thread_id is None:
            return
        lock = self._locks.get(thread_id)
        if lock is None:
            lock = self._locks[thread_id] = asyncio.Lock()
        await lock.acquire()
        self._held[asyncio.current_task()] = lock

    async def __aexit__(
        self, kind: type[BaseException] | None, error: BaseException | None, trace: TracebackType | None
    ) -> None:
        lock = self._held.pop(asyncio.current_task(), None)
        if lock is not None:
            lock.release()
