"""One extraction request: the recognizer's first pass, the model's proposal, validation, one repair."""

from __future__ import annotations

import asyncio
import json
import logging
from typing import Any, Literal

from langchain_core.language_models import BaseChatModel
from langchain_core.messages import AnyMessage, HumanMessage, SystemMessage
from langchain_core.runnables import Runnable
from langchain_core.utils.function_calling import convert_to_openai_tool
from pydantic import ValidationError

from nodes.memory import Extraction, normalized_name, parse_candidates, parse_profile
from nodes.models import with_transient_retry
from nodes.profile import ProfileUpdate
from nodes.prompts import EXTRACTION_EXAMPLES, EXTRACTION_SYSTEM, REPAIR_REQUEST
from nodes.recognizer import Recognition, Recognizer

__all__ = [
    "EXTRACTION_MAX_TOKENS",
    "ExtractionMethod",
    "extraction_system",
    "make_extractor",
    "merge_recognition",
    "request_extraction",
]

_log = logging.getLogger("convomem.extract")

EXTRACTION_MAX_TOKENS = 400
"""Enough for a dozen entities and a profile; a small model that runs on inside a string stops here."""

ExtractionMethod = Literal["function_calling", "json_schema", "none"]
"""How the model is asked: a forced tool call, a JSON reply under the schema's grammar
(llama.cpp's `response_format` {"type": "json_object", "schema": ...}), or not at all (recognizer only)."""


def make_extractor(
    model: BaseChatModel, method: ExtractionMethod, max_attempts: int
) -> Runnable[Any, Any] | None:
    """The model bound for extraction; None for method "none".

    `stream=False`: nobody watches these tokens, and under the graph's message streaming a forced tool
    call would otherwise be streamed, which llama.cpp's function-calling handler does not finish.
    """
    if method == "none":
        return None
    bound: Runnable[Any, Any]
    if method == "json_schema":
        schema = convert_to_openai_tool(Extraction)["function"]["parameters"]
        bound = model.bind(
            response_format={"type": "json_object", "schema": schema},
            stream=False,
            max_tokens=EXTRACTION_MAX_TOKENS,
        )
    else:
        bound = model.bind_tools([Extraction], tool_choice=Extraction.__name__).bind(
            stream=False, max_tokens=EXTRACTION_MAX_TOKENS
        )
    return with_transient_retry(bound, max_attempts)


def extraction_system(examples: bool) -> str:
    """The system prompt: the instructions, then worked examples when `examples` is on."""
    return f"{EXTRACTION_SYSTEM}\n\n{EXTRACTION_EXAMPLES}" if examples else EXTRACTION_SYSTEM


def _no_call_reason(reply: Any) -> str:
    invalid = getattr(reply, "invalid_tool_calls", None) or []
    if invalid:
        return f"the tool arguments are not valid JSON ({str(invalid[0].get('error') or '')[:80]})"
    return "no tool call in the reply"


def _arguments(reply: Any) -> Any:
    """The tool call's arguments, or a JSON object the reply's text is (the json_schema method)."""
    calls = getattr(reply, "tool_calls", None) or []
    if calls:
        return calls[0]["args"]
    content = getattr(reply, "content", "")
    if isinstance(content, str) and content.lstrip().startswith("{"):
        try:
            return json.loads(content)
        except json.JSONDecodeError as error:
            raise ValueError(f"the reply is not valid JSON ({error.msg})") from None
    raise ValueError(_no_call_reason(reply))


def _parsed(arguments: Any, source: str, *, last_attempt: bool) -> dict[str, Any]:
    """Entities and profile of one reply, only what the user said (`source`). A bad profile earns the
    repair attempt; on the last attempt it is dropped and the entities are kept."""
    entities, dropped = parse_candidates(arguments, source)
    try:
        profile = parse_profile(arguments.get("profile"), source)
    except ValueError as failure:
        if not last_attempt:
            raise
        profile = None
        dropped.append(f"profile: {str(failure).splitlines()[0][:120]}")
    result: dict[str, Any] = {
        "entities": [e.model_dump() for e in entities],
        "dropped": dropped,
        "error": None,
    }
    if profile is not None:
        result["profile"] = profile.model_dump(exclude_defaults=True)
    return result


async def _ask_model(extractor: Runnable[Any, Any], text: str, system: str) -> dict[str, Any]:
    # Shaped like the worked examples ("Message: ..."); "Newest user message:" was copied back as a value.
    request = HumanMessage(content=f"Message: {text}")
    messages: list[AnyMessage] = [SystemMessage(content=system), request]
    error = ""
    for attempt in range(2):
        try:
            reply = await extractor.ainvoke(messages)
        except Exception as failure:
            _log.warning("entity extraction skipped, the model failed: %s", failure)
            return {"entities": [], "dropped": [], "error": f"model failed: {type(failure).__name__}"}
        try:
            return _parsed(_arguments(reply), text, last_attempt=attempt == 1)
        except (ValueError, ValidationError) as failure:
            error = str(failure).splitlines()[0][:200]
            # The repair note goes in the system part: the user's words stay the last message.
            messages = [SystemMessage(content=f"{system}\n\n{REPAIR_REQUEST.format(error=error)}"), request]
    _log.warning("entity extraction failed after one repair attempt: %s", error)
    return {"entities": [], "dropped": [], "error": error}


def merge_recognition(found: Recognition, proposed: dict[str, Any]) -> dict[str, Any]:
    """The recognizer's entities and facts first; the model adds names it missed, refines an OTHER
    type, and fills profile fields the recognizer left empty."""
    entities = [e.model_dump() for e in found.entities]
    seen = {normalized_name(e.value): n for n, e in enumerate(found.entities)}
    for raw in proposed["entities"]:
        at = seen.get(normalized_name(str(raw["value"])))
        if at is None:
            seen[normalized_name(str(raw["value"]))] = len(entities)
            entities.append(raw)
        elif entities[at]["type"] == "OTHER":
            entities[at] = {**entities[at], "type": raw["type"]}
    mine = found.profile or ProfileUpdate()
    theirs = ProfileUpdate.model_validate(proposed.get("profile") or {})
    stated = {fact.attribute for fact in mine.facts}
    profile = mine.model_copy(
        update={
            "name": mine.name or theirs.name,
            "language": mine.language or theirs.language,
            "communication_style": mine.communication_style or theirs.communication_style,
            "interests": mine.interests or theirs.interests,
            "preferred_topics": mine.preferred_topics or theirs.preferred_topics,
            "facts": [*mine.facts, *(f for f in theirs.facts if f.attribute not in stated)],
        }
    )
    result = {**proposed, "entities": entities}
    result.pop("profile", None)
    if dumped := profile.model_dump(exclude_defaults=True):
        result["profile"] = dumped
    return result


async def request_extraction(
    extractor: Runnable[Any, Any] | None,
    text: str,
    *,
    recognizer: Recognizer | None = None,
    examples: bool = False,
) -> dict[str, Any]:
    """Ask for entities and profile; one repair attempt on a malformed reply, then give up without raising.

    With a `recognizer`, its first pass comes first and the model only adds (merge_recognition); with no
    `extractor`, the recognizer alone answers. Every value the model proposes must be the user's own
    words (nodes.grounding). Returns {"entities": [...], "dropped": [...], "error": str | None} plus
    "profile" when one was proposed (JSON-friendly: it is a task result).
    """
    found = await asyncio.to_thread(recognizer, text) if recognizer is not None else None
    proposed: dict[str, Any] = {"entities": [], "dropped": [], "error": None}
    if extractor is not None:
        proposed = await _ask_model(extractor, text, extraction_system(examples))
    return proposed if found is None else merge_recognition(found, proposed)
