"""Find one remembered entity by a name a person types (CLI `entity`, `forget --entity`); edit, forget it."""

from __future__ import annotations

from typing import Literal

from langgraph.store.base import BaseStore, GetOp

from nodes.entity_index import entity_keys_for, name_words, stage_index, stage_unindex, word_addresses
from nodes.memory import EntityRecord, name_forms, normalized_name, read_record
from nodes.memory_batch import MemoryBatch
from nodes.namespaces import entity_namespace
from nodes.resolution import SIMILARITY_THRESHOLD, index_names, lookup_words, name_similarity

__all__ = ["find_entity", "forget_entity", "replace_entity"]

LOOKUP_CANDIDATES = 20


async def find_entity(
    store: BaseStore, user_id: str, name: str, *, look_alike: bool = True
) -> tuple[str, EntityRecord] | None:
    """(key, record) of the entity called `name` (its value or an alias, any case or corporate suffix),
    else (with `look_alike`) the closest look-alike above the resolution threshold, else None. Read
    through the word index, so the cost does not grow with how much is remembered."""
    namespace = entity_namespace(user_id)
    stored = await _stored_as(store, namespace, name)
    if stored is not None:
        return stored
    wanted = normalized_name(name)
    if not wanted:
        return None
    keys = await entity_keys_for(store, user_id, lookup_words(name), limit=LOOKUP_CANDIDATES)
    items = await store.abatch([GetOp(namespace, key) for key in keys])
    found = [(key, record) for key, item in zip(keys, items, strict=True) if (record := read_record(item))]
    exact = [(key, record) for key, record in found if wanted in name_forms(record)]
    if exact or not look_alike:
        return max(exact, default=None, key=lambda pair: (pair[1].mentions, pair[0]))
    scored = [(_similarity(wanted, record), key, record) for key, record in found]
    best = max(scored, default=None, key=lambda entry: (entry[0], entry[2].mentions))
    return (best[1], best[2]) if best is not None and best[0] >= SIMILARITY_THRESHOLD else None


async def _stored_as(
    store: BaseStore, namespace: tuple[str, ...], name: str
) -> tuple[str, EntityRecord] | None:
    """The record stored under exactly this key or with exactly this value, whatever it is: junk an
    older extraction kept (`}, {`, `None`) normalizes to nothing or to a word the index skips, and must
    still be reachable to be forgotten."""
    by_key = read_record(await store.aget(namespace, name))
    if by_key is not None:
        return name, by_key
    items = await store.asearch(namespace, filter={"value": name}, limit=LOOKUP_CANDIDATES)
    found = [(item.key, record) for item in items if (record := read_record(item)) and record.value == name]
    return max(found, default=None, key=lambda pair: (pair[1].mentions, pair[0]))


def _similarity(name: str, record: EntityRecord) -> float:
    return max(name_similarity(name, form) for form in name_forms(record))


async def forget_entity(store: BaseStore, user_id: str, name: str) -> EntityRecord | None:
    """Delete the entity called `name` and its word-index entries; the record deleted, or None.

    Extraction markers stay: messages already extracted are not extracted again, so a resumed or
    replayed turn does not bring the entity back. It returns only if the user mentions it again.
    The record and its index entries go in one store batch (one transaction on Postgres).
    """
    found = await find_entity(store, user_id, name, look_alike=False)  # deleting: the exact name only
    if found is None:
        return None
    key, record = found
    memory = MemoryBatch(store)
    memory.put(entity_namespace(user_id), key, None)
    await stage_unindex(memory, user_id, key, index_names(record))
    await memory.flush()
    return record


def _words(names: list[str]) -> set[str]:
    return set().union(*(name_words(name) for name in names))


async def replace_entity(
    store: BaseStore,
    user_id: str,
    old: tuple[str, EntityRecord],
    new: tuple[str, EntityRecord],
    *,
    index: list[str] | Literal[False] = False,
) -> None:
    """Write an edited record under its (possibly new) key; the word index follows its names.

    One read of the word documents involved, then one store batch (one transaction on Postgres): the
    new names indexed, the record written, and the old record and its stale words gone together.
    Queued in that order, so a store that writes a batch in order and stops leaves an index entry to
    nothing (skipped on read) or, for a moved key, both records (the old one can be forgotten), never a
    record nothing can find. `index` is the store's embedding of the record
    (nodes.extract_entities.ENTITY_INDEX_FIELDS or False).
    """
    (old_key, old_record), (new_key, new_record) = old, new
    names = index_names(new_record)
    namespace = entity_namespace(user_id)
    memory = MemoryBatch(store)
    await memory.read(word_addresses(user_id, _words([*names, *index_names(old_record)])))
    await stage_index(memory, user_id, new_key, names)
    memory.put(namespace, new_key, new_record.model_dump(), index=index)
    if new_key != old_key:
        memory.put(namespace, old_key, None)
        await stage_unindex(memory, user_id, old_key, index_names(old_record))
    elif stale := _words(index_names(old_record)) - _words(names):
        await stage_unindex(memory, user_id, old_key, sorted(stale))
    await memory.flush()
