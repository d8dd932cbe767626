"""The labelled set (cases.json): sentences, the entities and facts each should yield, recall questions."""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from nodes.memory import normalized_name

__all__ = ["CASES", "Expected", "RecallCase", "Sentence", "load_cases", "same_name"]

CASES = Path(__file__).with_name("cases.json")


def same_name(left: str, right: str) -> bool:
    """Names compared as resolution compares them: case, punctuation and corporate suffixes aside."""
    return normalized_name(left) == normalized_name(right)


@dataclass(frozen=True)
class Expected:
    """An entity a sentence names: its type, its value and other spellings that count as it."""

    type: str
    value: str
    aliases: tuple[str, ...] = ()

    def names(self, value: str) -> bool:
        return any(same_name(value, name) for name in (self.value, *self.aliases))

    @staticmethod
    def parse(raw: list[Any]) -> Expected:
        return Expected(raw[0], raw[1], tuple(raw[2]) if len(raw) > 2 else ())


@dataclass(frozen=True)
class Sentence:
    id: str
    text: str
    entities: tuple[Expected, ...]
    optional: tuple[Expected, ...] = ()
    profile: dict[str, str] = field(default_factory=dict)
    """name / lives_in / works_at the sentence states about the user."""
    optional_profile: dict[str, str] = field(default_factory=dict)
    tour: bool = False


@dataclass(frozen=True)
class RecallCase:
    """A fact said on one thread and asked about on another thread of the same user."""

    id: str
    statement: str
    question: str
    answers: tuple[str, ...]
    tour: bool = False

    def answered(self, reply: str) -> bool:
        folded = reply.casefold()
        return all(answer.casefold() in folded for answer in self.answers)


def load_cases(path: Path = CASES) -> tuple[list[Sentence], list[RecallCase]]:
    data = json.loads(path.read_text())
    sentences = [
        Sentence(
            id=raw["id"],
            text=raw["text"],
            entities=tuple(Expected.parse(e) for e in raw["entities"]),
            optional=tuple(Expected.parse(e) for e in raw.get("optional", [])),
            profile=dict(raw.get("profile", {})),
            optional_profile=dict(raw.get("optional_profile", {})),
            tour=bool(raw.get("tour", False)),
        )
        for raw in data["sentences"]
    ]
    recall = [
        RecallCase(
            id=raw["id"],
            statement=raw["statement"],
            question=raw["question"],
            answers=tuple(raw["answers"]),
            tour=bool(raw.get("tour", False)),
        )
        for raw in data["recall"]
    ]
    return sentences, recall
