"""Entity resolution before insert: which stored record a proposed entity names, or that it is new."""

from __future__ import annotations

import re
import unicodedata
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from difflib import SequenceMatcher
from typing import Literal

from langgraph.store.base import BaseStore, SearchItem, SearchOp

from nodes.entity_index import keys_in, name_words, query_words, word_addresses
from nodes.memory import (
    EntityCandidate,
    EntityRecord,
    entity_key,
    name_forms,
    normalized_name,
    read_record,
    record_of,
)
from nodes.memory_batch import Address, MemoryBatch
from nodes.namespaces import entity_namespace

__all__ = [
    "INTERCHANGEABLE_TYPES",
    "MATCH_KINDS",
    "SEMANTIC_THRESHOLD",
    "SIMILARITY_THRESHOLD",
    "Resolution",
    "best_match",
    "index_names",
    "lookup_words",
    "name_similarity",
    "prefetch",
    "resolve_entity",
    "resolve_in",
    "type_affinity",
]

MatchKind = Literal["normalized", "alias", "similar", "semantic", "new"]
MATCH_KINDS: tuple[MatchKind, ...] = ("normalized", "alias", "similar", "semantic", "new")

SIMILARITY_THRESHOLD = 0.88
"""difflib ratio of two normalized names from which they are one entity. Tuned on examples:
'ada lovelase'~'ada lovelace' 0.92 and 'kubernets'~'kubernetes' 0.95 merge; 'austria'/'australia'
0.875, 'paris'/'parma' 0.6, 'anna'/'anne' 0.75 do not."""

SEMANTIC_THRESHOLD = 0.9
"""Store search score (cosine similarity) from which a semantic neighbour is the same entity."""

CANDIDATE_LIMIT = 20
"""Records compared per proposed entity, found through the word index: never a scan of all entities."""

INTERCHANGEABLE_TYPES = frozenset({"ORG", "PRODUCT", "TECH"})
"""Types a small model swaps for one thing ('Kubernetes' TECH or PRODUCT, 'Google' ORG or PRODUCT)."""

_DIGITS = re.compile(r"\d+")


@dataclass(frozen=True)
class Resolution:
    """Where a proposed entity goes: `key` of its record (None `record` when new) and how it was found."""

    key: str
    record: EntityRecord | None
    how: MatchKind
    score: float = 1.0


def type_affinity(proposed: str, stored: str) -> Literal["same", "loose"] | None:
    """How far two types may be trusted to name one entity.

    "same" (equal types) allows every match, fuzzy ones included. "loose" allows only an exact name
    or alias: one side OTHER (the model did not know the type), or both in INTERCHANGEABLE_TYPES (the
    same normalized name proposed as ORG and then PRODUCT is one entity: the model's type is the
    weaker evidence). Anything else never merges, whatever the name: Jordan the PERSON and Jordan the
    LOC, Paris the PERSON and Paris the LOC stay two entities.
    """
    if proposed == stored:
        return "same"
    if "OTHER" in (proposed, stored) or {proposed, stored} <= INTERCHANGEABLE_TYPES:
        return "loose"
    return None


def _unaccented(name: str) -> str:
    return "".join(c for c in unicodedata.normalize("NFKD", name) if not unicodedata.combining(c))


def lookup_words(name: str) -> set[str]:
    """Index words that bring a record up as a candidate for `name`.

    Its words (as the shared word index has them), their unaccented forms ('berlín' finds 'berlin'),
    and for words of five letters or more a '_' + first-three-letters token: a one-word typo
    ('kubernets') shares no word with its entity ('kubernetes'), but keeps its first letters. The
    tokens never occur in a message, so they bring nothing extra to load_memory's lookups.
    """
    words = name_words(name)
    plain = {_unaccented(word) for word in words}
    return words | plain | {f"_{word[:3]}" for word in plain if len(word) >= 5}


def index_names(record: EntityRecord) -> list[str]:
    """What the word index keeps for a record: every name and alias, plus their lookup tokens."""
    names = [record.value, *record.aliases]
    return [*names, *sorted(set().union(*(lookup_words(name) for name in names)))]


def name_similarity(left: str, right: str) -> float:
    """Similarity of two normalized names in [0, 1], 0 where a typo cannot be the explanation.

    A typo keeps the number of words, the first letter of each word and every number: 'Bob Smith' is
    not 'Rob Smith' and 'iPhone 14' is not 'iPhone 15', though each pair is 89% alike letter by
    letter. Accents do not count ('Berlín' is 'Berlin').
    """
    a, b = _unaccented(left), _unaccented(right)
    if a == b:
        return 1.0
    words_a, words_b = a.split(), b.split()
    if len(words_a) != len(words_b) or any(x[0] != y[0] for x, y in zip(words_a, words_b, strict=True)):
        return 0.0
    if _DIGITS.findall(a) != _DIGITS.findall(b):
        return 0.0
    return SequenceMatcher(None, a, b, autojunk=False).ratio()


def _match(
    candidate: EntityCandidate, record: EntityRecord, threshold: float
) -> tuple[MatchKind, float] | None:
    affinity = type_affinity(candidate.type, record.type)
    if affinity is None:
        return None
    name = normalized_name(candidate.value)
    if name == normalized_name(record.value):
        return "normalized", 1.0
    forms = name_forms(record)
    if name in forms:
        return "alias", 1.0
    if affinity != "same":
        return None
    score = max(name_similarity(name, form) for form in forms)
    return ("similar", score) if score >= threshold else None


def best_match(
    candidate: EntityCandidate,
    records: Iterable[tuple[str, EntityRecord]],
    *,
    threshold: float = SIMILARITY_THRESHOLD,
) -> Resolution | None:
    """The record `candidate` names among `records` (key, record), or None.

    Preference: an exact name (value or alias) before a look-alike; then the same type before a
    loose one; then value before alias, the higher score, more mentions, the smaller key.
    """
    ranked: list[tuple[tuple[int, int, int, float, int, str], Resolution]] = []
    for key, record in records:
        found = _match(candidate, record, threshold)
        if found is None:
            continue
        how, score = found
        same = type_affinity(candidate.type, record.type) == "same"
        exact = how in ("normalized", "alias")
        rank = (0 if exact else 1, 0 if same else 1, MATCH_KINDS.index(how), -score, -record.mentions, key)
        ranked.append((rank, Resolution(key=key, record=record, how=how, score=score)))
    return min(ranked, key=lambda pair: pair[0])[1] if ranked else None


def _semantic_match(
    hits: list[SearchItem], candidate: EntityCandidate, threshold: float
) -> Resolution | None:
    """The nearest same-type neighbour by the store's vector index, if close enough."""
    for hit in hits:
        record = read_record(hit)
        if hit.score is None or hit.score < threshold or record is None:
            continue
        if type_affinity(candidate.type, record.type) == "same":
            return Resolution(key=hit.key, record=record, how="semantic", score=float(hit.score))
    return None


def _semantic_search(user_id: str, candidate: EntityCandidate) -> SearchOp:
    return SearchOp(entity_namespace(user_id), query=candidate.value, limit=5)


async def prefetch(
    batch: MemoryBatch,
    user_id: str,
    candidates: Sequence[EntityCandidate],
    *,
    semantic: bool = False,
    also: Iterable[Address] = (),
) -> None:
    """Read what resolving `candidates` needs in two round trips whatever their number: their own keys
    and index words (and `also`, e.g. the profile), then the records the index names for those not
    stored under their own key (and, with `semantic`, their vector searches)."""
    namespace = entity_namespace(user_id)
    own = [(namespace, entity_key(c.type, c.value)) for c in candidates]
    words = [
        address for c in candidates for address in word_addresses(user_id, query_words(lookup_words(c.value)))
    ]
    await batch.read([*own, *words, *also])
    missed = [c for c, address in zip(candidates, own, strict=True) if batch.value(*address) is None]
    keys = [
        key
        for c in missed
        for key in await keys_in(batch, user_id, lookup_words(c.value), limit=CANDIDATE_LIMIT)
    ]
    searches = [_semantic_search(user_id, c) for c in missed] if semantic else []
    await batch.read([(namespace, key) for key in keys], searches)


def _record(batch: MemoryBatch, namespace: tuple[str, ...], key: str) -> EntityRecord | None:
    return record_of(batch.value(namespace, key))


async def resolve_in(
    batch: MemoryBatch,
    user_id: str,
    candidate: EntityCandidate,
    *,
    semantic: bool = False,
    similarity_threshold: float = SIMILARITY_THRESHOLD,
    semantic_threshold: float = SEMANTIC_THRESHOLD,
) -> Resolution:
    """Find the record `candidate` names, cheapest evidence first; a new key when there is none.

    1. the record under the candidate's own key (same type, same normalized name);
    2. records sharing a lookup word (the word index), by exact name, alias, then similarity;
    3. with `semantic`, the store's vector search (records must be indexed on value and aliases).
    Bounded: one key read, one index read, at most CANDIDATE_LIMIT record reads, one search; reads
    `batch` already holds (prefetch) cost nothing, and writes it queued count as done.
    """
    namespace = entity_namespace(user_id)
    own_key = entity_key(candidate.type, candidate.value)
    await batch.read([(namespace, own_key)])
    own = _record(batch, namespace, own_key)
    if own is not None:
        return Resolution(key=own_key, record=own, how="normalized")
    keys = await keys_in(batch, user_id, lookup_words(candidate.value), limit=CANDIDATE_LIMIT)
    await batch.read([(namespace, key) for key in keys])
    records = [(key, record) for key in keys if (record := _record(batch, namespace, key))]
    found = best_match(candidate, records, threshold=similarity_threshold)
    if found is None and semantic:
        hits = await batch.search(namespace, candidate.value, 5)
        found = _semantic_match(hits, candidate, semantic_threshold)
    return found or Resolution(key=own_key, record=None, how="new")


async def resolve_entity(
    store: BaseStore,
    user_id: str,
    candidate: EntityCandidate,
    *,
    semantic: bool = False,
    similarity_threshold: float = SIMILARITY_THRESHOLD,
    semantic_threshold: float = SEMANTIC_THRESHOLD,
) -> Resolution:
    """resolve_in on a fresh batch: up to four round trips."""
    return await resolve_in(
        MemoryBatch(store),
        user_id,
        candidate,
        semantic=semantic,
        similarity_threshold=similarity_threshold,
        semantic_threshold=semantic_threshold,
    )
