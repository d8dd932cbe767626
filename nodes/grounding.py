"""What may be remembered: names the user said, never sentences, placeholders, fragments or invented text.

A small model proposes junk whatever its prompt says (`}, {`, `None`, "The newest user message.", the
name of a person in its instructions), so every stored value passes these checks, whichever model or
reviewer proposed it. Shape checks need only the value; grounding checks need the user's own words.
"""

from __future__ import annotations

import re
import unicodedata

__all__ = [
    "MAX_NAME_WORDS",
    "PLACEHOLDERS",
    "about_the_user",
    "grounded",
    "introduces_self",
    "junk_reason",
    "words",
]

MAX_NAME_WORDS = 6
"""A longer value is a sentence or a description, not the name of something."""

PLACEHOLDERS = frozenset(
    {
        *("none", "null", "nil", "n/a", "na", "nan", "unknown", "undefined", "unspecified", "not specified"),
        *("not applicable", "not available", "not mentioned", "not given", "no name", "nothing", "empty"),
        *("no such thing exists", "tbd", "todo", "string", "value", "example", "entity", "entities", "name"),
        *("type", "other", "person", "org", "loc", "date", "product", "tech", "event", "user", "assistant"),
        *("newest user message", "the newest user message", "message", "the user", "the assistant"),
        *("i", "me", "you", "we", "he", "she", "it", "they", "my", "your", "our", "them", "us", "him", "her"),
    }
)
"""Values that stand for "nothing" or name a role, a schema field or a pronoun, compared casefolded."""

_ABBREVIATIONS = frozenset({"inc.", "corp.", "co.", "ltd.", "jr.", "sr.", "st.", "dr.", "mr.", "mrs.", "ms."})
_NEVER_FIRST = frozenset({"this", "these", "that", "those", "there", "here", "it", "its", "it's", "which"})
_RELATIVES = (
    "sister|brother|mother|mom|mum|father|dad|wife|husband|partner|son|daughter|friend|boss|colleague|"
    "cousin|aunt|uncle|grandmother|grandfather|grandma|grandpa|neighbour|neighbor|girlfriend|boyfriend|"
    "niece|nephew|kids?|children|parents?|family|team|manager|sibling|roommate|flatmate"
)
_SOMEONE_ELSE = re.compile(rf"\b(?:my|our|his|her|their)\s+(?:{_RELATIVES})\b|^\s*(?:he|she|they)\b")
_FIRST_PERSON = re.compile(r"\b(?:i|i'm|im|i've|i'd|i'll|me|my|mine|we|we're|our|us)\b")
_SELF_INTRODUCTION = r"\b(?:my name is|my name's|name's|i am|i'm|im|call me|this is|it's)\s+"
_WORD = re.compile(r"\w[\w+#]*")
_SENTENCE_END = re.compile(r"(?<=[.!?;])\s+|\n+")


def _fold(text: str) -> str:
    return unicodedata.normalize("NFKC", text).casefold().replace("\u2019", "'")


def words(text: str) -> list[str]:
    """Casefolded words of `text` (`C++` and `C#` keep their symbols; punctuation splits words)."""
    return _WORD.findall(_fold(text))


def junk_reason(value: str) -> str | None:
    """Why `value` is not the name of something to remember, or None when it may be one.

    Refused: no letter or digit (`}, {`), a placeholder (None, N/A, "No such thing exists"), more than
    MAX_NAME_WORDS words, a sentence (ends with . ! ? but not as "Acme Inc.", "Ada L." or "D.C." do, or
    starts with This/That/It, or with "The" followed by a lowercase word: "The newest user message").
    """
    cleaned = " ".join(value.split())
    folded = _fold(cleaned)
    if not any(ch.isalnum() for ch in cleaned):
        return "no letters or digits"
    if folded.strip(" .,;:!?\"'()[]{}") in PLACEHOLDERS:
        return "a placeholder, not a name"
    parts = cleaned.split()
    if len(parts) > MAX_NAME_WORDS:
        return f"more than {MAX_NAME_WORDS} words: a sentence, not a name"
    last = _fold(parts[-1])
    abbreviation = last in _ABBREVIATIONS or len(last) == 2 or "." in last[:-1]  # Inc., Ada L., D.C.
    if cleaned[-1] in "!?" or (cleaned[-1] == "." and len(parts) > 1 and not abbreviation):
        return "ends like a sentence"
    first = _fold(parts[0]).strip("\"'")
    if first in _NEVER_FIRST or (first == "the" and len(parts) > 1 and parts[1][:1].islower()):
        return "starts like a sentence"
    if sum(1 for ch in cleaned if ch in "{}[]<>|\\=") > 0:
        return "a fragment of markup or code"
    return None


def grounded(value: str, source: str) -> bool:
    """Every word of `value` is a word the user wrote (a possessive 's aside), in any order or case.

    What only the assistant, the instructions or the examples said is not the user's and is refused.
    """
    said = set(words(source))
    wanted = [w for w in words(value) if w != "s"]
    return bool(wanted) and all(w in said for w in wanted)


def _sentences_with(value: str, source: str) -> list[str]:
    wanted = set(words(value))
    return [s for s in _SENTENCE_END.split(_fold(source)) if wanted and wanted <= set(words(s))]


def about_the_user(value: str, source: str) -> bool:
    """A fact about the user: a sentence that says `value` speaks in the first person and not about a
    relative or someone else ("My sister moved to Porto" gives no lives_in to the user)."""
    return any(
        _FIRST_PERSON.search(s) and not _SOMEONE_ELSE.search(s) for s in _sentences_with(value, source)
    )


def introduces_self(source: str, name: str) -> bool:
    """The user gives `name` as their own ("my name is Ada", "I'm Ada Lovelace", "call me Ada")."""
    first = words(name)[:1]
    if not first:
        return False
    pattern = _SELF_INTRODUCTION + re.escape(first[0]) + r"\b"
    return re.search(pattern, _fold(source)) is not None
