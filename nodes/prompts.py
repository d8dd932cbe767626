"""Prompt text for every model call; constants only, so tests and fakes can recognise each call."""

from __future__ import annotations

__all__ = [
    "DEFAULT_INSTRUCTIONS",
    "EXTRACTION_SYSTEM",
    "MEMORY_HEADER",
    "PROFILE_HEADER",
    "REPAIR_REQUEST",
    "SUMMARY_HEADER",
    "SUMMARY_SYSTEM",
]

DEFAULT_INSTRUCTIONS = (
    "You are a helpful assistant with long-term memory. Use what you remember about the user when it "
    "helps, and say so plainly when you do not know something."
)

MEMORY_HEADER = "What you remember about this user:"

PROFILE_HEADER = "Who the user is (their profile):"

SUMMARY_HEADER = "Summary of the earlier conversation:"

SUMMARY_SYSTEM = (
    "You condense conversations. Merge the previous summary with the new messages into one short "
    "factual summary that keeps names, facts, preferences and decisions. Reply with the summary only."
)

EXTRACTION_SYSTEM = (
    "You extract memorable entities from the newest turn of a conversation: people, organisations, "
    "places, dates, products, technologies and events the user mentioned. Call the tool once with every "
    "entity found; use an empty list when there is none. Fill `profile` only with what the user says "
    "about themselves (name, where they live or work, what they like); leave it out otherwise."
)

REPAIR_REQUEST = (
    "Your previous reply could not be used: {error}. Call the tool again with arguments that match its "
    "schema exactly."
)
