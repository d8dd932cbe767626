"""Prompt text for every model call; constants only, so tests and fakes can recognise each call."""

from __future__ import annotations

__all__ = [
    "DEFAULT_INSTRUCTIONS",
    "EXTRACTION_EXAMPLES",
    "EXTRACTION_SYSTEM",
    "MEMORY_HEADER",
    "PROFILE_HEADER",
    "REPAIR_REQUEST",
    "SCHEMA_REPAIR_REQUEST",
    "SUMMARY_HEADER",
    "SUMMARY_SYSTEM",
    "TOOLS_EXHAUSTED",
    "TOOLS_GAVE_UP",
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

EXTRACTION_EXAMPLES = """Copy names exactly as the user wrote them; never invent one. Examples:

Message: My name is Maria Rossi, I live in Turin and I work for Fiat as a Python developer.
{"entities": [{"type": "PERSON", "value": "Maria Rossi"}, {"type": "LOC", "value": "Turin"}, \
{"type": "ORG", "value": "Fiat"}, {"type": "TECH", "value": "Python"}], "profile": {"name": "Maria Rossi", \
"facts": [{"attribute": "lives_in", "value": "Turin"}, {"attribute": "works_at", "value": "Fiat"}]}}

Message: My brother Paul visited Berlin in June 2019.
{"entities": [{"type": "PERSON", "value": "Paul"}, {"type": "LOC", "value": "Berlin"}, \
{"type": "DATE", "value": "June 2019"}]}

Message: Can you explain how rainbows form?
{"entities": []}"""
"""Worked examples for small models (CONVOMEM_EXTRACTION_EXAMPLES); their names are never the user's, so
a model that copies them proposes nothing that is stored (nodes.grounding)."""

REPAIR_REQUEST = (
    "Your previous reply could not be used: {error}. Call the tool again with arguments that match its "
    "schema exactly."
)

SCHEMA_REPAIR_REQUEST = (
    "Your previous reply does not match the required JSON schema: {error}. Reply again with only a JSON "
    "value that matches the schema exactly."
)
TOOLS_EXHAUSTED = (
    "You have used every tool call this turn allows: answer the user now with what the tools returned, "
    "without calling a tool."
)
"""Added to respond's instructions for the turn's last model call, made without tools."""

TOOLS_GAVE_UP = "I could not finish this with my tools within this turn; please ask again more specifically."
"""The reply when the model's last call, made without tools, still only tried to call one."""
