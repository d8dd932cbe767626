"""One node's store work in few round trips: its reads gathered into batches, its writes into one."""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from typing import Any, Literal

from langgraph.store.base import BaseStore, GetOp, Item, PutOp, SearchItem, SearchOp

__all__ = ["Address", "MemoryBatch"]

Address = tuple[tuple[str, ...], str]
"""(namespace, key) of one store document."""

_SearchKey = tuple[tuple[str, ...], str | None, int]


class MemoryBatch:
    """A read-through cache of store documents and a queue of writes, for one node's memory work.

    AsyncPostgresStore runs one `abatch` call as one pipeline on one pooled connection: one transaction
    whatever the mix of gets, searches and puts (pinned in tests/unit/test_upstream_pins.py). So each
    `read` that has something to fetch costs one round trip, whatever it fetches, and `flush` writes
    everything queued in one round trip, all of it or none of it. `value` answers as the store will
    once the queued writes land: a later step of the same node sees what an earlier step queued.
    """

    def __init__(self, store: BaseStore) -> None:
        self.store = store
        self._items: dict[Address, Mapping[str, Any] | None] = {}
        self._searches: dict[_SearchKey, list[SearchItem]] = {}
        self._puts: dict[Address, PutOp] = {}

    async def read(self, addresses: Iterable[Address], searches: Sequence[SearchOp] = ()) -> None:
        """Fetch, in one round trip, the documents and searches not read yet (none: no round trip)."""
        gets = list(dict.fromkeys(a for a in addresses if a not in self._items and a not in self._puts))
        wanted = list(dict.fromkeys(s for s in map(_search_key, searches) if s not in self._searches))
        if not gets and not wanted:
            return
        ops: list[GetOp | SearchOp] = [GetOp(namespace, key) for namespace, key in gets]
        ops += [SearchOp(namespace, query=query, limit=limit) for namespace, query, limit in wanted]
        results = await self.store.abatch(ops)
        for address, item in zip(gets, results[: len(gets)], strict=True):
            self._items[address] = item.value if isinstance(item, Item) else None
        for search, hits in zip(wanted, results[len(gets) :], strict=True):
            self._searches[search] = (
                [hit for hit in hits if isinstance(hit, SearchItem)] if isinstance(hits, list) else []
            )

    def value(self, namespace: tuple[str, ...], key: str) -> Mapping[str, Any] | None:
        """The document as it will be once the queued writes land; None when absent. Read it first."""
        put = self._puts.get((namespace, key))
        if put is not None:
            return put.value
        return self._items[(namespace, key)]

    def known(self, namespace: tuple[str, ...], key: str) -> bool:
        """Whether `value` can answer for this document without a read."""
        return (namespace, key) in self._puts or (namespace, key) in self._items

    async def search(self, namespace: tuple[str, ...], query: str | None, limit: int) -> list[SearchItem]:
        """The store's search of `namespace` for `query` (read once, then from the cache)."""
        await self.read((), [SearchOp(namespace, query=query, limit=limit)])
        return self._searches[(namespace, query, limit)]

    def put(
        self,
        namespace: tuple[str, ...],
        key: str,
        value: dict[str, Any] | None,
        *,
        index: Literal[False] | list[str] | None = False,
    ) -> None:
        """Queue a write (None deletes); the last write of a document wins, in its first write's place."""
        self._puts[(namespace, key)] = PutOp(namespace, key, value, index=index)

    async def flush(self) -> None:
        """Write everything queued in one round trip, in the order first queued."""
        if not self._puts:
            return
        puts = list(self._puts.values())
        await self.store.abatch(puts)
        self._items.update({(p.namespace, p.key): p.value for p in puts})
        self._puts.clear()


def _search_key(op: SearchOp) -> _SearchKey:
    return (op.namespace_prefix, op.query, op.limit)
