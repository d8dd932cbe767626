"""Integration fixtures: a Convomem on the test's real Postgres database, talking to the fake model."""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest

from graphs.api import Convomem, open_convomem
from graphs.settings import Settings


@pytest.fixture
async def app(settings: Settings) -> AsyncIterator[Convomem]:
    """The real API on the test database; the fake model answers over HTTP."""
    async with open_convomem(settings) as opened:
        yield opened
