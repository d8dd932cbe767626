"""Seeded, realistic user messages (30-50 words, one or two named things each) and reply vocabulary."""

from __future__ import annotations

import random

__all__ = ["ENTITIES", "REPLY_WORDS", "entities_in", "user_message"]

ENTITIES: dict[str, tuple[str, ...]] = {
    "PERSON": ("Ada", "Grace", "Linus", "Margaret", "Alan", "Barbara", "Dennis", "Frances", "Ken", "Radia"),
    "LOC": ("Lisbon", "Oslo", "Nairobi", "Kyoto", "Valparaiso", "Montreal", "Tbilisi", "Porto", "Hanoi"),
    "ORG": ("Acme", "Initech", "Globex", "Umbrella", "Hooli", "Stark Industries", "Wayne Enterprises"),
    "TECH": ("Postgres", "Kubernetes", "Rust", "LangGraph", "Terraform", "Kafka", "Redis", "Django"),
}

OPENERS = (
    "Quick update on my side:",
    "I wanted to ask you something.",
    "So here is what happened today.",
    "Following up on what we discussed,",
    "Can you help me think this through?",
    "Random thought while I was cooking dinner:",
)
SENTENCES = (
    "My colleague {PERSON} thinks we should move the whole team to {LOC} for the spring.",
    "We are migrating the billing service at {ORG} from an old monolith to {TECH}.",
    "I spent the weekend in {LOC} with {PERSON} and we tried a tiny restaurant near the harbour.",
    "{PERSON} from {ORG} asked whether we could finish the prototype before the end of the month.",
    "The {TECH} cluster kept running out of memory during the nightly batch jobs again.",
    "I am considering a new job offer from {ORG}, but the commute to {LOC} worries me.",
    "{PERSON} recommended reading a book about distributed systems and careful engineering.",
    "Our budget review is next Tuesday and I still need numbers for the {TECH} licences.",
)
FILLERS = (
    "It has been a long week and I am honestly a bit tired.",
    "I keep going back and forth on this and would love a second opinion.",
    "The weather has been terrible, so everything takes longer than planned.",
    "I wrote down a few options but none of them feels obviously right yet.",
    "My manager wants a short written plan with risks and a rough timeline.",
    "Please keep it practical, I do not need the theory behind it.",
    "What would you do in my position, and what should I check first?",
    "Also remind me later what I told you about my plans for the summer.",
)
REPLY_TEXT = (
    "sure that sounds reasonable first check the numbers then talk to your team about the timeline "
    "it depends on how much risk you can accept a small prototype usually answers most questions "
    "remember to write down what you decide so you can revisit it later if plans change again "
    "consider the costs the people involved and what success would look like in three months"
)
REPLY_WORDS = tuple(REPLY_TEXT.split())


def user_message(seed: int, turn: int) -> str:
    """The `turn`-th message of conversation `seed`: the same text on every run."""
    rng = random.Random(seed * 1_000_003 + turn)
    picks = {kind: rng.choice(names) for kind, names in ENTITIES.items()}
    parts = [rng.choice(OPENERS), rng.choice(SENTENCES).format(**picks)]
    while len(" ".join(parts).split()) < rng.randint(30, 50):
        parts.append(rng.choice(FILLERS))
    return " ".join(parts)


def entities_in(text: str) -> list[tuple[str, str]]:
    """At most two (type, name) pairs of the known names found in `text`, as an extractor would."""
    found = [(kind, name) for kind, names in ENTITIES.items() for name in names if name in text]
    return found[:2]
