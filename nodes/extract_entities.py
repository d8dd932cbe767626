"""extract_entities: one structured-output call on the newest turn, reviewed if asked, stored once."""

from __future__ import annotations

import logging
from collections.abc import Sequence
from datetime import UTC, datetime
from typing import Any

from langchain_core.language_models import BaseChatModel
from langchain_core.messages import AnyMessage, HumanMessage, SystemMessage
from langchain_core.runnables import Runnable
from langgraph.config import get_config
from langgraph.func import task
from langgraph.runtime import Runtime
from langgraph.store.base import BaseStore
from langgraph.types import interrupt
from pydantic import ValidationError

from nodes.errors import InvalidInput
from nodes.memory import (
    EntityCandidate,
    EntityRecord,
    Extraction,
    entity_key,
    entity_namespace,
    extracted_namespace,
    merge_entity,
    parse_candidates,
)
from nodes.models import with_transient_retry
from nodes.prompts import EXTRACTION_SYSTEM, REPAIR_REQUEST
from nodes.state import Context, Node, State, Update, memory_user, newest_human
from nodes.tokens import text_of

__all__ = [
    "apply_review",
    "check_review_answer",
    "make_extract_entities",
    "request_extraction",
    "upsert_entities",
]

_log = logging.getLogger("convomem.extract")


async def request_extraction(extractor: Runnable[Any, Any], text: str) -> dict[str, Any]:
    """Ask for entities; one repair attempt on a malformed reply, then give up without raising.

    Returns {"entities": [...], "dropped": [...], "error": str | None} (JSON-friendly: it is a task result).
    """
    request = HumanMessage(content=f"Newest user message:\n{text}")
    messages: list[AnyMessage] = [SystemMessage(content=EXTRACTION_SYSTEM), request]
    error = ""
    for _attempt in range(2):
        try:
            reply = await extractor.ainvoke(messages)
        except Exception as failure:
            _log.warning("entity extraction skipped, the model failed: %s", failure)
            return {"entities": [], "dropped": [], "error": f"model failed: {type(failure).__name__}"}
        calls = getattr(reply, "tool_calls", None) or []
        try:
            if not calls:
                raise ValueError("no tool call in the reply")
            entities, dropped = parse_candidates(calls[0]["args"])
            return {"entities": [e.model_dump() for e in entities], "dropped": dropped, "error": None}
        except (ValueError, ValidationError) as failure:
            error = str(failure).splitlines()[0][:200]
            # The repair note goes in the system part: the user's words stay the last message.
            repair = f"{EXTRACTION_SYSTEM}\n\n{REPAIR_REQUEST.format(error=error)}"
            messages = [SystemMessage(content=repair), request]
    _log.warning("entity extraction failed after one repair attempt: %s", error)
    return {"entities": [], "dropped": [], "error": error}


def apply_review(decision: Any, proposed: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """What the reviewer keeps: "approve" (or true) keeps all, "reject" (or false) none, a list replaces."""
    if decision is True or decision in ("approve", "approved", "yes"):
        return proposed
    if decision is False or decision is None or decision in ("reject", "rejected", "no"):
        return []
    edited = decision.get("entities") if isinstance(decision, dict) else decision
    if not isinstance(edited, list):
        raise ValueError("a review answer is 'approve', 'reject' or a list of entities")
    return [EntityCandidate.model_validate(item).model_dump() for item in edited]


def check_review_answer(pending: Sequence[Any], answer: Any) -> None:
    """Refuse, before anything runs, a review answer the node could not use (InvalidInput)."""
    for interrupt_ in pending:
        value = getattr(interrupt_, "value", None)
        if isinstance(value, dict) and value.get("type") == "memory_review":
            try:
                apply_review(answer, value["entities"])
            except (ValueError, ValidationError) as error:
                raise InvalidInput(
                    f"Cannot use that review answer ({str(error).splitlines()[0]}): give approve, reject or "
                    'a JSON list of entities like [{"type": "PERSON", "value": "Ada"}].'
                ) from None


async def upsert_entities(
    store: BaseStore, user_id: str, entities: list[dict[str, Any]], *, message_id: str, thread_id: str
) -> int:
    """Resolve each candidate to its record and count this message once; returns records written."""
    namespace = entity_namespace(user_id)
    now = datetime.now(UTC).isoformat()
    written = 0
    seen: set[str] = set()
    for raw in entities:
        candidate = EntityCandidate.model_validate(raw)
        key = entity_key(candidate.type, candidate.value)
        if key in seen:
            continue
        seen.add(key)
        item = await store.aget(namespace, key)
        existing = EntityRecord.model_validate(item.value) if item else None
        merged = merge_entity(existing, candidate, message_id=message_id, thread_id=thread_id, now=now)
        if merged is not None:
            await store.aput(namespace, key, merged.model_dump(), index=False)
            written += 1
    return written


def make_extract_entities(model: BaseChatModel, *, max_attempts: int = 3) -> Node:
    """Never fails the turn: model errors are retried, then recorded in `extraction.error`.

    `stream=False`: nobody watches these tokens, and under the graph's message streaming a forced tool
    call would otherwise be streamed, which llama.cpp's function-calling handler does not finish.
    """
    extractor = with_transient_retry(
        model.bind_tools([Extraction], tool_choice=Extraction.__name__).bind(stream=False), max_attempts
    )

    async def propose(text: str) -> dict[str, Any]:
        return await request_extraction(extractor, text)

    # A task, so a resumed review sees the same proposal instead of asking the model again.
    propose_entities: Any = task(name="propose_entities")(propose)  # type: ignore[arg-type]

    async def extract_entities(state: State, runtime: Runtime[Context]) -> Update:
        """Entities of the newest human message into the user's store namespace, once per message id."""
        latest = newest_human(state["messages"])
        if latest is None or latest.id is None or runtime.store is None:
            return {}
        user_id = memory_user(state, runtime)
        if await runtime.store.aget(extracted_namespace(user_id), latest.id) is not None:
            return {}
        proposal: dict[str, Any] = await propose_entities(text_of(latest))
        entities: list[dict[str, Any]] = proposal["entities"]
        if state.get("review_memory", runtime.context.review_memory) and entities:
            decision = interrupt({"type": "memory_review", "message_id": latest.id, "entities": entities})
            entities = apply_review(decision, entities)
        thread_id = str(get_config().get("configurable", {}).get("thread_id", ""))
        stored = await upsert_entities(
            runtime.store, user_id, entities, message_id=latest.id, thread_id=thread_id
        )
        outcome = {"message_id": latest.id, "stored": stored, "error": proposal["error"]}
        await runtime.store.aput(extracted_namespace(user_id), latest.id, outcome, index=False)
        return {"extraction": outcome}

    return extract_entities
