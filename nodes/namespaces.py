"""The store's namespace layout: where each kind of long-term memory of a user lives (the one place)."""

from __future__ import annotations

__all__ = [
    "APP",
    "USERS",
    "entity_index_namespace",
    "entity_namespace",
    "extracted_namespace",
    "profile_namespace",
    "user_namespace",
    "user_prefix",
]

APP = "convomem"
USERS = "users"


def user_namespace(user_id: str) -> tuple[str, ...]:
    """Everything remembered about one user lies under this namespace (forgetting a user deletes it)."""
    return (APP, USERS, user_id)


def entity_namespace(user_id: str) -> tuple[str, ...]:
    """Entity records, keyed `TYPE:normalized name`."""
    return (*user_namespace(user_id), "entities")


def extracted_namespace(user_id: str) -> tuple[str, ...]:
    """One marker per message id already extracted: what makes extraction idempotent."""
    return (*user_namespace(user_id), "extracted")


def entity_index_namespace(user_id: str) -> tuple[str, ...]:
    """The word index: name and context words to entity keys, so nothing reads all entities."""
    return (*user_namespace(user_id), "entity_index")


def profile_namespace(user_id: str) -> tuple[str, ...]:
    """The user's one profile document."""
    return (*user_namespace(user_id), "profile")


def user_prefix(user_id: str) -> str:
    """The user's namespace as AsyncPostgresStore writes it in its `prefix` column (labels joined by
    dots, which is why user ids may not contain one), with the trailing dot of everything below it."""
    return ".".join(user_namespace(user_id)) + "."
