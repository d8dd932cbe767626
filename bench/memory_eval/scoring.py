"""Counting: entities right and wrong per type, profile facts, junk, recall answers, loops, HTML entities.

The junk judge here is the benchmark's own, written apart from nodes.grounding, so a stored value the
validation lets through is counted, not excused by the same rule.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Any

from bench.memory_eval.cases import Sentence, same_name
from nodes.memory import ENTITY_TYPES

__all__ = [
    "FACTS",
    "SentenceScore",
    "html_entities",
    "judge_junk",
    "loops",
    "score_sentence",
    "stored_values",
    "tour_passes",
]

FACTS = ("name", "lives_in", "works_at")
_PLACEHOLDERS = {"none", "null", "n/a", "na", "unknown", "undefined", "nothing", "not specified", "empty"}
_SENTENCE_START = re.compile(r"^(?:the|this|that|these|it|there)\s+[a-z]", re.IGNORECASE)
_HTML_ENTITY = re.compile(r"&(?:#\d+|#x[0-9a-f]+|amp|quot|apos|lt|gt);", re.IGNORECASE)


def judge_junk(value: str, said: str) -> str | None:
    """Why a stored value is not something the user named, or None."""
    if not re.search(r"\w", value):
        return "punctuation"
    if value.strip().casefold().strip(".") in _PLACEHOLDERS or "no such" in value.casefold():
        return "placeholder"
    words = value.split()
    if len(words) > 6 or (len(words) >= 3 and value.rstrip().endswith(".")):
        return "sentence"
    if _SENTENCE_START.match(value) and not value.split()[1][:1].isupper():
        return "sentence"
    heard = set(re.findall(r"\w+", said.casefold()))
    if not all(word in heard for word in re.findall(r"\w+", value.casefold()) if word != "s"):
        return "not in the user's words"
    return None


def stored_values(result: dict[str, Any]) -> list[tuple[str, str]]:
    """(kind, value) of everything an extraction result would store: entities and profile values."""
    values = [(str(e["type"]), str(e["value"])) for e in result.get("entities", [])]
    profile = result.get("profile") or {}
    if profile.get("name"):
        values.append(("profile.name", str(profile["name"])))
    for key in ("language", "communication_style"):
        if profile.get(key):
            values.append((f"profile.{key}", str(profile[key])))
    for key in ("interests", "preferred_topics"):
        values.extend((f"profile.{key}", str(item)) for item in profile.get(key) or [])
    values.extend((f"fact.{f['attribute']}", str(f["value"])) for f in profile.get("facts") or [])
    return values


def _facts_of(result: dict[str, Any]) -> dict[str, str]:
    profile = result.get("profile") or {}
    facts = {str(f["attribute"]): str(f["value"]) for f in profile.get("facts") or []}
    if profile.get("name"):
        facts["name"] = str(profile["name"])
    return facts


@dataclass
class SentenceScore:
    """One sentence's counts. per_type[T] = [right, wrong, missed]."""

    sentence_id: str
    per_type: dict[str, list[int]] = field(default_factory=lambda: {t: [0, 0, 0] for t in ENTITY_TYPES})
    facts_expected: int = 0
    facts_found: int = 0
    facts_wrong: int = 0
    junk: list[str] = field(default_factory=list)
    dropped: int = 0
    error: str | None = None
    seconds: float = 0.0
    found: list[str] = field(default_factory=list)


def score_sentence(sentence: Sentence, result: dict[str, Any], seconds: float) -> SentenceScore:
    score = SentenceScore(sentence.id, dropped=len(result.get("dropped", [])), seconds=seconds)
    score.error = result.get("error")
    proposed = [(str(e["type"]), str(e["value"])) for e in result.get("entities", [])]
    score.found = [f"{t}:{v}" for t, v in proposed]
    for expected in sentence.entities:
        hit = any(t == expected.type and expected.names(v) for t, v in proposed)
        score.per_type[expected.type][0 if hit else 2] += 1
    for type_, value in proposed:
        right = any(e.type == type_ and e.names(value) for e in sentence.entities)
        optional = any(e.names(value) for e in sentence.optional)
        if not right and not optional:  # not named by the sentence, or named with another type
            score.per_type[type_ if type_ in score.per_type else "OTHER"][1] += 1
    facts = _facts_of(result)
    wanted = {k: v for k, v in sentence.profile.items() if k in FACTS}
    score.facts_expected = len(wanted)
    score.facts_found = sum(1 for k, v in wanted.items() if k in facts and same_name(facts[k], v))
    allowed_facts = {**sentence.optional_profile, **sentence.profile}
    score.facts_wrong = sum(
        1 for k, v in facts.items() if not (k in allowed_facts and same_name(allowed_facts[k], v))
    )
    score.junk = [
        f"{kind}={value!r} ({why})"
        for kind, value in stored_values(result)
        if (why := judge_junk(value, sentence.text))
    ]
    return score


def tour_passes(sentences: list[Sentence], scores: dict[str, SentenceScore]) -> bool:
    """Every entity and fact the tour's sentences should yield was found, with the right type."""
    tour = [scores[s.id] for s in sentences if s.tour]
    missed = sum(counts[2] for score in tour for counts in score.per_type.values())
    return missed == 0 and all(score.facts_found == score.facts_expected for score in tour)


def loops(reply: str) -> bool:
    """The reply says one sentence (20+ characters) more than once."""
    parts = [p.strip().casefold() for p in re.split(r"(?<=[.!?])\s+|\n+", reply) if len(p.strip()) >= 20]
    return len(parts) != len(set(parts))


def html_entities(reply: str) -> int:
    return len(_HTML_ENTITY.findall(reply))
