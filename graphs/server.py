"""What langgraph.json names besides the graph: our Postgres checkpointer and store, and the HTTP app.

langgraph-api enters each factory once at start-up and exits it at shutdown. It loads this file once per
entry, so each factory opens its own small pool rather than sharing module state.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from urllib.parse import unquote

from langgraph.checkpoint.postgres.aio import AsyncPostgresSaver
from langgraph.store.postgres.aio import AsyncPostgresStore
from langgraph_sdk import Auth
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest
from starlette.applications import Starlette
from starlette.middleware import Middleware
from starlette.requests import Request
from starlette.responses import PlainTextResponse, Response
from starlette.routing import Route
from starlette.types import ASGIApp, Receive, Scope, Send

from graphs.auth import identify
from graphs.console import ConsoleBackend, console_routes
from graphs.console_guard import CrossSiteRule
from graphs.database import open_database
from graphs.http_errors import convomem_error_response
from graphs.input_rules import check_thread_id
from graphs.settings import Settings
from nodes.errors import ConvomemError, InvalidInput

__all__ = ["METRICS_PATH", "MetricsRule", "app", "checkpointer", "make_app", "metrics", "store"]


@asynccontextmanager
async def checkpointer() -> AsyncIterator[AsyncPostgresSaver]:
    """The Postgres checkpointer; runs the one setup step for every table."""
    async with open_database(Settings()) as persistence:
        yield persistence.checkpointer


@asynccontextmanager
async def store() -> AsyncIterator[AsyncPostgresStore]:
    """The Postgres store for long-term memory (`runtime.store` in the nodes)."""
    async with open_database(Settings()) as persistence:
        yield persistence.store


class ThreadIdRule:
    """ASGI middleware: a malformed thread id in a `/threads/<id>/...` URL is refused with the words the
    CLI prints (422), before langgraph-api's own UUID check answers with its own. A well-formed id that is
    not a UUID still gets the server's answer: LangGraph Server wants UUID thread ids."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        parts = scope["path"].split("/") if scope["type"] == "http" else []
        if len(parts) > 2 and parts[1] == "threads" and parts[2]:
            try:
                check_thread_id(unquote(parts[2]))
            except InvalidInput as error:
                await convomem_error_response(Request(scope), error)(scope, receive, send)
                return
        await self.app(scope, receive, send)


METRICS_PATH = "/metrics"


class MetricsRule:
    """ASGI middleware: /metrics (langgraph-api's own route, which cannot be shadowed and has no auth,
    and this app's) follows the API's rule. Without CONVOMEM_API_TOKENS loopback clients only; with them
    a valid `Authorization: Bearer <token>` (any identity: the numbers are the server's, no user's data)."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http" and scope["path"].rstrip("/") == METRICS_PATH:
            settings = Settings()
            authorization = Request(scope).headers.get("authorization")
            try:
                identify(authorization, scope, settings.api_token_table, local_user=settings.user_id)
            except Auth.exceptions.HTTPException as refusal:
                detail = str(refusal.detail)
                refused = PlainTextResponse(detail, status_code=refusal.status_code, headers=refusal.headers)
                await refused(scope, receive, send)
                return
        await self.app(scope, receive, send)


async def metrics(request: Request) -> Response:
    # No docstring: langgraph-api parses route docstrings as YAML for its OpenAPI schema. Under
    # langgraph-api its own /metrics answers first, from the same default registry.
    return Response(generate_latest(), media_type=CONTENT_TYPE_LATEST)


def make_app(settings: Settings) -> Starlette:
    """The custom HTTP app for these settings: /metrics, the web console (/console), and the guards."""
    console = ConsoleBackend(settings)

    @asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[None]:
        try:
            yield
        finally:
            await console.aclose()

    return Starlette(
        routes=[Route(METRICS_PATH, metrics), *console_routes(console)],
        middleware=[
            Middleware(CrossSiteRule, allowed=settings.allowed_origin_set),
            Middleware(MetricsRule),
            Middleware(ThreadIdRule),
        ],
        exception_handlers={ConvomemError: convomem_error_response},
        lifespan=lifespan,
    )


app = make_app(Settings())
"""The custom HTTP app (langgraph.json `http.app`): /metrics for Prometheus and the web console; its
middleware refuses cross-site changes and malformed thread ids, and its exception handler answers a
ConvomemError the graph raises during a request (a state edit that breaks the input rules) with its 4xx
and message."""
