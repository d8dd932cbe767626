"""The web console in a real headless Chromium (Debian's, driven by Playwright) against `langgraph dev`:
a database and fake model per module, data seeded through the Python API, screenshots kept as artifacts,
and any request that would leave the machine recorded and refused."""

from __future__ import annotations

import asyncio
import os
import shutil
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import psycopg
from playwright.sync_api import Browser, Page, Request, Route, sync_playwright

from graphs.api import open_convomem
from graphs.settings import Settings
from tests.e2e.server_support import REPO
from tests.support.databases import create_database, drop_database

__all__ = [
    "ARTIFACTS",
    "CHROMIUM",
    "HOSTILE",
    "browser_page",
    "create_database",
    "drop_database",
    "rows",
    "seed",
    "shot",
]

CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"
ARTIFACTS = Path(os.environ.get("CONVOMEM_ARTIFACTS", REPO / "artifacts")) / "console"
HOSTILE = "<script>window.__pwned=1</script><img src=x onerror=window.__pwned=2>"


def seed(settings: Settings) -> None:
    """u1: a thread about work and home (then a message full of markup) and one about a trip; u2: one."""

    async def run() -> None:
        async with open_convomem(settings) as cm:
            await cm.send("c-home", "I work at Acme and I live in Lisbon.", user_id="u1")
            await cm.send("c-home", HOSTILE, user_id="u1")
            await cm.send("c-trip", "Plan a trip to Porto with Beatriz.", user_id="u1")
            await cm.send("c-bob", "My name is Bob and I work at Globex.", user_id="u2")

    asyncio.run(run())


@contextmanager
def browser_page(base_url: str, outside: list[str]) -> Iterator[Page]:
    """A page whose requests to anywhere but the server are refused and listed in `outside`."""

    def only_local(route: Route, request: Request) -> None:
        if request.url.startswith(base_url) or request.url.startswith(("data:", "blob:")):
            route.continue_()
        else:
            outside.append(request.url)
            route.abort()

    with sync_playwright() as playwright:
        browser: Browser = playwright.chromium.launch(executable_path=CHROMIUM)
        try:
            context = browser.new_context(viewport={"width": 1280, "height": 900}, accept_downloads=True)
            context.route("**/*", only_local)
            page = context.new_page()
            page.set_default_timeout(20_000)
            yield page
        finally:
            browser.close()


def shot(page: Page, name: str) -> Path:
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    path = ARTIFACTS / f"{name}.png"
    page.screenshot(path=str(path), full_page=True)
    return path


def rows(url: str, query: str, *params: Any) -> list[tuple[Any, ...]]:
    with psycopg.connect(url) as conn:
        return conn.execute(query, params).fetchall()  # type: ignore[arg-type]
