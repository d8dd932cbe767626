"""Memory as plain second-person sentences, for small models that do not read labelled lists.

Measured on SmolLM2-135M (bench/memory_eval): with the profile as "- lives_in: Lisbon (since ...)" the
model answered "Where do I live, and where do I work?" with Lisbon and Acme in 2 of 10 graph turns; told
"You live in Lisbon. You work at Acme." it repeats the facts back.
"""

from __future__ import annotations

from nodes.memory import EntityRecord
from nodes.profile import UserProfile, fit_lines, text_tokens

__all__ = ["MENTIONED_HEADER", "SENTENCES_HEADER", "mentioned_text", "profile_sentences"]

SENTENCES_HEADER = "Facts about the user (use them in your answer, speaking to the user as you):"
MENTIONED_HEADER = "You have also mentioned:"

_NOW = {"lives_in": "You live in {}.", "works_at": "You work at {}.", "name": "Your name is {}."}
_PAST = {"lives_in": "You used to live in {}.", "works_at": "You used to work at {}."}
_ENDED = {"lives_in": "You no longer live in {}.", "works_at": "You no longer work at {}."}


def _words(attribute: str) -> str:
    return attribute.replace("_", " ")


def _fact_lines(profile: UserProfile) -> list[str]:
    lines: list[str] = []
    for attribute, versions in profile.facts.items():
        if not versions:
            continue
        current, name = versions[-1], _words(attribute)
        if current.valid_to is None:
            lines.append(_NOW.get(attribute, f"Your {name} is {{}}.").format(current.value))
        else:
            lines.append(_ENDED.get(attribute, f"Your {name} is no longer {{}}.").format(current.value))
        for past in reversed(versions[:-1]):
            lines.append(_PAST.get(attribute, f"Your {name} used to be {{}}.").format(past.value))
    return lines


def profile_sentences(profile: UserProfile, max_tokens: int) -> str:
    """The profile as sentences to the user, facts first (what recall asks about), cut to `max_tokens`."""
    lines = _fact_lines(profile)
    if profile.name:
        lines.append(_NOW["name"].format(profile.name))
    if profile.language:
        lines.append(f"You speak {profile.language}.")
    if profile.communication_style:
        lines.append(f"You like answers that are {profile.communication_style}.")
    if profile.interests:
        lines.append(f"You are interested in {', '.join(profile.interests)}.")
    if profile.preferred_topics:
        lines.append(f"You like to talk about {', '.join(profile.preferred_topics)}.")
    return "\n".join(fit_lines(SENTENCES_HEADER, lines, max_tokens))


def mentioned_text(records: list[EntityRecord], max_tokens: int) -> tuple[str, list[str]]:
    """The leading entities' names on one line within `max_tokens`, and the values that made it in."""
    kept: list[str] = []
    for record in records:
        if text_tokens(f"{MENTIONED_HEADER} {', '.join([*kept, record.value])}.") > max_tokens:
            break
        kept.append(record.value)
    return (f"{MENTIONED_HEADER} {', '.join(kept)}." if kept else ""), kept
