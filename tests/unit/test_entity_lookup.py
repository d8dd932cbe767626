"""find_entity / forget_entity on an InMemoryStore, and the write order that keeps every record findable."""

from __future__ import annotations

from typing import Any

import pytest
from langgraph.store.base import Op, PutOp, Result
from langgraph.store.memory import InMemoryStore

from nodes.entity_lookup import find_entity, forget_entity
from nodes.extract_entities import store_entities
from nodes.namespaces import entity_index_namespace

T0 = "2026-01-01T00:00:00+00:00"
ADA = {"type": "PERSON", "value": "Ada Lovelace", "context": "the first programmer"}


class IndexOutage(InMemoryStore):
    """Fails every write to the word index while `down`: a crash between the index and the record."""

    down = True

    async def abatch(self, ops: Any) -> list[Result]:
        ops = list(ops)
        if self.down and any(
            isinstance(op, PutOp) and op.namespace == entity_index_namespace("u1") for op in ops
        ):
            raise ConnectionError("index write lost")
        return await super().abatch(ops)

    def batch(self, ops: Any) -> list[Result]:  # the sync path InMemoryStore's aput may take
        ops = list[Op](ops)
        if self.down and any(
            isinstance(op, PutOp) and op.namespace == entity_index_namespace("u1") for op in ops
        ):
            raise ConnectionError("index write lost")
        return super().batch(ops)


async def remember(store: InMemoryStore, *entities: dict[str, Any], message: str = "m1") -> None:
    ids = [message] * len(entities)
    await store_entities(store, "u1", list(entities), message_ids=ids, thread_id="t", now=T0)


async def test_a_record_is_findable_after_a_crash_between_its_index_and_its_write() -> None:
    store = IndexOutage()
    with pytest.raises(ConnectionError):
        await remember(store, ADA)
    store.down = False
    await remember(store, ADA)  # the re-run after the crash, same message
    found = await find_entity(store, "u1", "ada lovelace")
    assert found is not None and found[1].mentions == 1


async def test_find_takes_aliases_and_look_alikes_but_forget_takes_exact_names_only() -> None:
    store = InMemoryStore()
    await remember(store, ADA, {"type": "ORG", "value": "ACME Corp."})
    assert (await find_entity(store, "u1", "Acme Corporation")) is not None
    assert (await find_entity(store, "u1", "Ada Lovelase")) is not None, "a typo finds the record to show"
    assert await forget_entity(store, "u1", "Ada Lovelase") is None, "a look-alike is never deleted"
    forgotten = await forget_entity(store, "u1", "ada lovelace")
    assert forgotten is not None and forgotten.value == "Ada Lovelace"
    assert await find_entity(store, "u1", "Ada Lovelace") is None
    assert await find_entity(store, "u1", "acme") is not None, "the other memories stay"
