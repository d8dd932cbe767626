"""extract_entities: one structured-output call on the user's new messages, reviewed if asked, stored once."""

from __future__ import annotations

import logging
from collections import Counter
from collections.abc import Iterable, Sequence
from typing import Any, NamedTuple

from langchain_core.language_models import BaseChatModel
from langchain_core.messages import HumanMessage
from langgraph.func import task
from langgraph.runtime import Runtime
from langgraph.store.base import BaseStore
from langgraph.types import interrupt
from pydantic import ValidationError

from nodes.entity_index import stage_index
from nodes.errors import InvalidInput
from nodes.extraction_batch import (
    MAX_BATCH_MESSAGES,
    batch_text,
    extracted_before,
    has_new_content,
    marker_address,
    mentioning,
    not_extracted,
)
from nodes.extraction_request import ExtractionMethod, make_extractor, request_extraction
from nodes.memory import EntityCandidate, EntityRecord, merge_entity, with_alias
from nodes.memory_batch import Address, MemoryBatch
from nodes.namespaces import entity_namespace
from nodes.profile import ProfileUpdate, profile_address, stage_profile
from nodes.recognizer import Recognizer
from nodes.resolution import MATCH_KINDS, SEMANTIC_THRESHOLD, index_names, prefetch, resolve_in
from nodes.review import REVIEW_ANSWERS, decide_review
from nodes.state import Clock, Context, Node, State, Update, memory_user

__all__ = [
    "ENTITY_INDEX_FIELDS",
    "StoredEntities",
    "check_review_answer",
    "make_extract_entities",
    "request_extraction",
    "stage_entities",
    "store_entities",
    "upsert_entities",
]

_log = logging.getLogger("convomem.extract")

ENTITY_INDEX_FIELDS = ["value", "aliases[*]"]
"""What the store's vector index embeds per entity record when semantic resolution is on."""


def check_review_answer(pending: Sequence[Any], answer: Any) -> None:
    """Refuse, before anything runs, a review answer the node could not use (InvalidInput).

    The answers and their meaning are nodes.review's; no answer at all is refused too, never approval.
    """
    for interrupt_ in pending:
        value = getattr(interrupt_, "value", None)
        if isinstance(value, dict) and value.get("type") == "memory_review":
            if answer is None:
                raise InvalidInput(f"The memory review waits for an answer: give {REVIEW_ANSWERS}.")
            try:
                decide_review(answer, value)
            except (ValueError, ValidationError) as error:
                raise InvalidInput(
                    f"Cannot use that review answer ({str(error).splitlines()[0]}): give {REVIEW_ANSWERS}."
                ) from None


class StoredEntities(NamedTuple):
    """What store_entities did: records written, and how each proposed entity was resolved."""

    written: int
    resolution: dict[str, int]
    """Match kind (nodes.resolution.MATCH_KINDS) -> proposed entities resolved that way."""
    keys: tuple[str, ...] = ()
    """The store key each proposed entity resolved to, in order (written or already counted)."""


async def stage_entities(
    batch: MemoryBatch,
    user_id: str,
    entities: Sequence[dict[str, Any]],
    *,
    message_ids: Sequence[str],
    thread_id: str | None,
    now: str,
    semantic: bool = False,
    semantic_threshold: float = SEMANTIC_THRESHOLD,
    also: Iterable[Address] = (),
) -> StoredEntities:
    """store_entities, queued on `batch`: its reads (and `also`) in two round trips, its writes left to
    the caller's one flush, so they land together with whatever else the caller queued."""
    namespace = entity_namespace(user_id)
    candidates = [EntityCandidate.model_validate(raw) for raw in entities]
    await prefetch(batch, user_id, candidates, semantic=semantic, also=also)
    counts: Counter[str] = Counter({kind: 0 for kind in MATCH_KINDS})
    written: dict[str, EntityRecord] = {}
    keys: list[str] = []
    for candidate, message_id in zip(candidates, message_ids, strict=True):
        before: EntityRecord | None
        found = await resolve_in(
            batch, user_id, candidate, semantic=semantic, semantic_threshold=semantic_threshold
        )
        counts[found.how] += 1
        keys.append(found.key)
        if found.key in written:
            updated = with_alias(written[found.key], candidate.value)
            before = written[found.key]
        else:
            updated = merge_entity(
                found.record, candidate, message_id=message_id, thread_id=thread_id, now=now
            )
            before = found.record
        if updated is None:
            continue
        names = index_names(updated)
        # The index first (a store that writes a batch in order, not at once, may stop in between):
        # an index entry to a missing record is skipped on read; a record nothing can find is worse.
        if before is None or names != index_names(before):  # a new name to find it by
            await stage_index(batch, user_id, found.key, names)
        batch.put(
            namespace, found.key, updated.model_dump(), index=ENTITY_INDEX_FIELDS if semantic else False
        )
        written[found.key] = updated
    return StoredEntities(len(written), dict(counts), tuple(keys))


async def store_entities(
    store: BaseStore,
    user_id: str,
    entities: Sequence[dict[str, Any]],
    *,
    message_ids: Sequence[str],
    thread_id: str | None,
    now: str,
    semantic: bool = False,
    semantic_threshold: float = SEMANTIC_THRESHOLD,
) -> StoredEntities:
    """Resolve each candidate to its record (nodes.resolution), then count its message once.

    `message_ids[i]` is the message entity i came from. Candidates are resolved one by one, so a second
    spelling in the same call finds the first one's record and becomes its alias. Re-running the same
    call writes nothing: each record already lists the message. Every write refreshes the word index.
    `thread_id` None: the mentions belong to no conversation (an entity a person adds by hand).
    Three store round trips at most in the common case (two reads, one write), whatever the count.
    """
    batch = MemoryBatch(store)
    stored = await stage_entities(
        batch,
        user_id,
        entities,
        message_ids=message_ids,
        thread_id=thread_id,
        now=now,
        semantic=semantic,
        semantic_threshold=semantic_threshold,
    )
    await batch.flush()
    return stored


async def upsert_entities(
    store: BaseStore,
    user_id: str,
    entities: list[dict[str, Any]],
    *,
    message_id: str,
    thread_id: str,
    now: str,
) -> int:
    """store_entities for one message; returns records written."""
    stored = await store_entities(
        store, user_id, entities, message_ids=[message_id] * len(entities), thread_id=thread_id, now=now
    )
    return stored.written


def _mark(batch: MemoryBatch, user_id: str, messages: Sequence[HumanMessage], marker: dict[str, Any]) -> None:
    """Queue the per-message "extracted" markers, last: a store that writes a batch in order and stops
    before them re-runs an idempotent write."""
    for message in messages:
        batch.put(*marker_address(user_id, message), {**marker, "message_id": message.id})


def make_extract_entities(
    model: BaseChatModel,
    *,
    clock: Clock,
    extract_every: int = 1,
    new_content_only: bool = False,
    max_attempts: int = 3,
    semantic: bool = False,
    semantic_threshold: float = SEMANTIC_THRESHOLD,
    method: ExtractionMethod = "function_calling",
    examples: bool = False,
    recognizer: Recognizer | None = None,
) -> Node:
    """Never fails the turn: model errors are retried, then recorded in `extraction.error`.

    `method`, `examples` and `recognizer` say how entities are found (nodes.extraction_request: the
    model's forced tool call or grammar-constrained JSON, worked examples in its prompt, an offline NER
    first pass); whoever proposes them, only the user's own words are stored. `semantic` adds the
    store's vector search to resolution; the store must have an index configured, and records are then
    embedded on ENTITY_INDEX_FIELDS. `clock` stamps first/last seen and fact validity; `extract_every`
    and `new_content_only` set the cadence (see the node's docstring).
    """
    extractor = make_extractor(model, method, max_attempts)

    async def propose(text: str) -> dict[str, Any]:
        return await request_extraction(extractor, text, recognizer=recognizer, examples=examples)

    # A task when a review may interrupt the node, so the resumed review sees the same proposal instead
    # of asking the model again. Without review nothing resumes mid-node but a crash, which may ask the
    # model again (the writes are idempotent per message id): the turn saves the task's checkpoint write.
    propose_entities: Any = task(name="propose_entities")(propose)  # type: ignore[arg-type]

    async def extract_entities(state: State, runtime: Runtime[Context]) -> Update:
        """Entities and profile facts of the user's not-yet-extracted messages, once per message id.

        Runs when at least `extract_every` human messages of the working set wait for extraction (every
        n-th turn of a fresh thread; counting waiting messages, not all messages, keeps the rhythm
        when the working set is folded) and then covers all of them, the newest MAX_BATCH_MESSAGES in
        one model call. With `extract_on_new_content_only`, messages that say nothing new
        (extraction_batch.has_new_content) are marked done without a model call.
        """
        if runtime.store is None:
            return {}
        memory = MemoryBatch(runtime.store)
        user_id = memory_user(state, runtime)
        done = extracted_before(state.get("extraction"), state["messages"])
        pending = await not_extracted(memory, user_id, state["messages"], done=done)
        if not pending or len(pending) < max(extract_every, 1):
            return {}
        batch = pending[-MAX_BATCH_MESSAGES:]
        _mark(memory, user_id, pending[:-MAX_BATCH_MESSAGES], {"stored": 0, "error": None, "skipped": True})
        outcome: dict[str, Any] = {
            "message_id": batch[-1].id,
            "stored": 0,
            "error": None,
            "message_ids": [m.id for m in batch],
            "resolution": {kind: 0 for kind in MATCH_KINDS},
            "profile_updated": False,
        }
        if new_content_only and not await has_new_content(memory, user_id, batch):
            _mark(memory, user_id, batch, {"stored": 0, "error": None})
            await memory.flush()
            return {"extraction": {**outcome, "skipped": "no new content"}}
        reviewed = state.get("review_memory", bool(runtime.context.review_memory))
        proposal: dict[str, Any] = await (propose_entities if reviewed else propose)(batch_text(batch))
        entities: list[dict[str, Any]] = proposal["entities"]
        profile: dict[str, Any] | None = proposal.get("profile")
        if reviewed and (entities or profile):
            review: dict[str, Any] = {
                "type": "memory_review",
                "message_id": batch[-1].id,
                "entities": entities,
            }
            review = review if profile is None else {**review, "profile": profile}
            entities, profile = decide_review(interrupt(review), review)
        now = clock().isoformat()
        stored = await stage_entities(
            memory,
            user_id,
            entities,
            message_ids=[mentioning(batch, str(e["value"])) for e in entities],
            thread_id=runtime.execution_info.thread_id or "" if runtime.execution_info else "",
            now=now,
            semantic=semantic,
            semantic_threshold=semantic_threshold,
            also=[profile_address(user_id)] if profile else [],
        )
        if profile:
            outcome["profile_updated"] = await stage_profile(
                memory, user_id, ProfileUpdate.model_validate(profile), message_id=str(batch[-1].id), now=now
            )
        marker = {"stored": stored.written, "error": proposal["error"]}
        _mark(memory, user_id, batch, marker)
        await memory.flush()  # entities, word index, profile and markers: one round trip, one transaction
        return {"extraction": {**outcome, **marker, "resolution": stored.resolution}}

    return extract_entities
