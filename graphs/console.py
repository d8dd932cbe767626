"""The web console: pages served at /console by LangGraph Server's custom HTTP app, with no CDN.

Every asset is a file in graphs/console_files/ served from here, so the console needs no internet. The
pages talk to /console/api (graphs.console_api), which acts through one Convomem opened on first use
and closed with the server.
"""

from __future__ import annotations

import asyncio
from contextlib import AsyncExitStack
from pathlib import Path

from starlette.requests import Request
from starlette.responses import FileResponse, RedirectResponse, Response
from starlette.routing import BaseRoute, Route

from graphs.api import Convomem, open_convomem
from graphs.console_api import console_api_routes
from graphs.console_guard import CONSOLE_PATH, SECURITY_HEADERS
from graphs.settings import Settings

__all__ = ["CONSOLE_FILES", "ConsoleBackend", "console_routes"]

CONSOLE_FILES = Path(__file__).with_name("console_files")
_ASSETS = {
    "console.js": "text/javascript",
    "threads.js": "text/javascript",
    "memory.js": "text/javascript",
    "ops.js": "text/javascript",
    "console.css": "text/css",
    "favicon.svg": "image/svg+xml",
}


class ConsoleBackend:
    """The process's Convomem for the console, opened on the first request (so a server nobody browses
    opens nothing more) and closed by `aclose` at shutdown."""

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self._stack = AsyncExitStack()
        self._convomem: Convomem | None = None
        self._lock = asyncio.Lock()

    async def convomem(self) -> Convomem:
        async with self._lock:
            if self._convomem is None:
                self._convomem = await self._stack.enter_async_context(open_convomem(self.settings))
            return self._convomem

    async def aclose(self) -> None:
        self._convomem = None
        await self._stack.aclose()


async def _index(request: Request) -> Response:
    return FileResponse(CONSOLE_FILES / "index.html", media_type="text/html", headers=SECURITY_HEADERS)


async def _asset(request: Request) -> Response:
    name = request.path_params["name"]
    if name not in _ASSETS:
        return Response("Not found", status_code=404, headers=SECURITY_HEADERS)
    return FileResponse(CONSOLE_FILES / name, media_type=_ASSETS[name], headers=SECURITY_HEADERS)


async def _to_index(request: Request) -> Response:
    return RedirectResponse(CONSOLE_PATH + "/")


def console_routes(backend: ConsoleBackend) -> list[BaseRoute]:
    """The pages, their assets and the JSON API."""
    pages: list[BaseRoute] = [
        Route(CONSOLE_PATH, _to_index, methods=["GET"]),
        Route(CONSOLE_PATH + "/", _index, methods=["GET"]),
        Route(CONSOLE_PATH + "/static/{name}", _asset, methods=["GET"]),
    ]
    return pages + list(console_api_routes(backend.convomem, backend.settings))
