"""The web console's guards: who a request acts as, cross-site refusal, and the headers every page gets.

Identity is the API's (graphs.auth.identify): with CONVOMEM_API_TOKENS a valid bearer token names the
user, who sees only their own data; without tokens loopback clients only, as the local single user, who
may look at any user (the CLI can too).

Cross-site requests: a browser sends `Origin` (and `Sec-Fetch-Site`) with every state-changing request.
Without tokens the server trusts any loopback client, so a page from another site open in the same
browser could otherwise make it archive, delete or run. CrossSiteRule refuses, on the whole server,
a state-changing request from a browser page whose origin is not the server's own (nor, outside the
console, one of CONVOMEM_ALLOWED_ORIGINS, LangGraph Studio's by default). Clients that are not browsers
(langgraph-sdk, curl) send no Origin and are not affected.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

from langgraph_sdk import Auth
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.types import ASGIApp, Receive, Scope, Send

from graphs.auth import identify
from graphs.settings import Settings

__all__ = [
    "CONSOLE_API",
    "CONSOLE_PATH",
    "SECURITY_HEADERS",
    "ConsoleUser",
    "CrossSiteRule",
    "console_user",
    "cross_site_refusal",
]

CONSOLE_PATH = "/console"
CONSOLE_API = "/console/api"
SAFE_METHODS = frozenset({"GET", "HEAD", "OPTIONS"})

SECURITY_HEADERS = {
    # No inline script or style at all: stored text that slipped into markup still could not run.
    "Content-Security-Policy": (
        "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; "
        "connect-src 'self'; object-src 'none'; base-uri 'none'; form-action 'self'; frame-ancestors 'none'"
    ),
    "X-Content-Type-Options": "nosniff",
    "X-Frame-Options": "DENY",
    "Referrer-Policy": "no-referrer",
    "Cache-Control": "no-store",
}


@dataclass(frozen=True)
class ConsoleUser:
    """Who a console request acts as; `confined` when a token names them (their own data only)."""

    identity: str
    confined: bool

    def may_see(self, user_id: str | None) -> bool:
        return not self.confined or user_id == self.identity


def console_user(request: Request, settings: Settings) -> ConsoleUser:
    """The request's user; Auth.exceptions.HTTPException (401) exactly when the API would refuse it."""
    tokens = settings.api_token_table
    authorization = request.headers.get("authorization")
    identity = identify(authorization, request.scope, tokens, local_user=settings.user_id)
    return ConsoleUser(identity, confined=bool(tokens))


def _own_origin(headers: Mapping[str, str], scope: Scope) -> str:
    return f"{scope.get('scheme', 'http')}://{headers.get('host', '')}"


def cross_site_refusal(scope: Scope, allowed: frozenset[str]) -> str | None:
    """Why a request must be refused as cross-site, or None. Only state-changing methods are checked."""
    if scope["type"] != "http" or scope["method"] in SAFE_METHODS:
        return None
    headers = Request(scope).headers
    origin = headers.get("origin")
    site = headers.get("sec-fetch-site")
    console = scope["path"].startswith(CONSOLE_API)
    if origin is not None and origin != "null":
        own = origin.rstrip("/") == _own_origin(headers, scope)
        if own or (not console and origin.rstrip("/") in allowed):
            return None
        return f"Cross-site request from {origin} refused: this server takes changes from its own pages only."
    if origin == "null" or site in ("cross-site", "same-site"):
        return "Cross-site request refused: this server takes changes from its own pages only."
    return None


class CrossSiteRule:
    """ASGI middleware: state-changing requests from another site's page are refused (403), before
    anything runs."""

    def __init__(self, app: ASGIApp, allowed: frozenset[str]) -> None:
        self.app = app
        self.allowed = allowed

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http":
            refusal = cross_site_refusal(scope, self.allowed)
            if refusal is not None:
                await JSONResponse({"detail": refusal}, status_code=403)(scope, receive, send)
                return
        await self.app(scope, receive, send)


def auth_refusal_response(refusal: Auth.exceptions.HTTPException) -> JSONResponse:
    """The API's 401 (or 403) for a console request, with its one line."""
    return JSONResponse(
        {"detail": str(refusal.detail)}, status_code=refusal.status_code, headers=refusal.headers
    )
