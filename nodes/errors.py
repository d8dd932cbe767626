"""The convomem exception tree: every error a user can cause or fix, with a message saying what to do."""

from __future__ import annotations

__all__ = [
    "ConfigError",
    "ConvomemError",
    "DatabaseUnavailable",
    "InvalidInput",
    "ModelUnavailable",
    "NothingToResume",
    "ReplyNotValid",
    "RunCancelled",
    "ThreadBusy",
    "TooManyRuns",
    "UnknownCheckpoint",
    "UnknownThread",
]


class ConvomemError(Exception):
    """Base of every error convomem reports to a user; its message is one line telling what to do."""


class ConfigError(ConvomemError):
    """Settings or environment that cannot work (bad URL, missing extra, unreadable key)."""


class InvalidInput(ConvomemError):
    """A message, identifier or argument the user gave that convomem refuses before touching state."""


class ReplyNotValid(ConvomemError, ValueError):
    """The model's reply did not match the assistant's response schema, even after one repair request.

    A ValueError too: LangGraph Server shows a failed run's message only for such built-in kinds
    (pinned by tests/unit/test_upstream_pins.py), so the server's caller reads the CLI's words."""


class DatabaseUnavailable(ConvomemError):
    """Postgres could not be reached or refused the connection."""


class ModelUnavailable(ConvomemError):
    """The chat model server did not answer after the retries."""


class UnknownCheckpoint(ConvomemError):
    """A checkpoint id that does not belong to the thread."""


class UnknownThread(InvalidInput):
    """A thread id with neither a checkpoint nor an archived message, where a thread must exist."""


class NothingToResume(ConvomemError):
    """Resume was asked for on a thread with no pending interrupt."""


class ThreadBusy(ConvomemError):
    """Another run holds the thread."""


class RunCancelled(ConvomemError):
    """A run stopped before its end because a newer message on the thread took over (on-busy rollback or
    interrupt), or because the lock that made it the thread's only writer was lost."""

    kept_progress: bool
    """True when the run's saved checkpoints stay (interrupt, lost lock); False when undone (rollback)."""

    def __init__(self, message: str, *, kept_progress: bool) -> None:
        super().__init__(message)
        self.kept_progress = kept_progress


class TooManyRuns(ConvomemError):
    """This process already runs as many turns at once as its lock pool allows."""
