"""convomem's errors as HTTP answers: the same one-line message the CLI prints, with a 4xx (or 503)."""

from __future__ import annotations

from langgraph_sdk import Auth
from starlette.requests import Request
from starlette.responses import JSONResponse, Response

from nodes.errors import (
    ConfigError,
    ConvomemError,
    DatabaseUnavailable,
    InvalidInput,
    ModelUnavailable,
    NothingToResume,
    ThreadBusy,
    UnknownCheckpoint,
)

__all__ = ["as_auth_refusal", "convomem_error_response", "status_of"]

_STATUS: tuple[tuple[type[ConvomemError], int], ...] = (
    (InvalidInput, 422),
    (UnknownCheckpoint, 404),
    (NothingToResume, 409),
    (ThreadBusy, 409),
    (DatabaseUnavailable, 503),
    (ModelUnavailable, 503),
    (ConfigError, 500),
)


def status_of(error: ConvomemError) -> int:
    """The HTTP status of an error: the caller's mistakes are 4xx, unavailable services 503."""
    return next((status for kind, status in _STATUS if isinstance(error, kind)), 400)


def as_auth_refusal(error: ConvomemError) -> Auth.exceptions.HTTPException:
    """A refusal from LangGraph Server's handler seam (graphs/auth.py): nothing is created or written."""
    return Auth.exceptions.HTTPException(status_code=status_of(error), detail=str(error))


def convomem_error_response(request: Request, error: Exception) -> Response:
    """Starlette exception handler of the server's custom app (state edits the graph refuses)."""
    assert isinstance(error, ConvomemError)
    return JSONResponse({"detail": str(error)}, status_code=status_of(error))
