"""Shared fixtures: one embedded Postgres per run, a fresh database per test, the fake model server."""

from __future__ import annotations

import tempfile
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import pytest

from checkpoint.embedded import start_embedded, stop_embedded
from checkpoint.persistence import Persistence, open_persistence
from graphs.settings import Settings
from tests.fake_openai import FakeOpenAIServer
from tests.support.databases import create_database, drop_database


@pytest.fixture(scope="session")
def postgres_root() -> Iterator[tuple[Path, str]]:
    """The embedded server, started once for the whole run in its own data folder."""
    data_dir = Path(tempfile.mkdtemp(prefix="convomem-test-"))
    url = start_embedded(data_dir)
    yield data_dir, url
    stop_embedded(data_dir)


@pytest.fixture
def database_url(postgres_root: tuple[Path, str]) -> Iterator[str]:
    """A new, empty database on the real server for one test."""
    _, root_url = postgres_root
    url = create_database(root_url)
    yield url
    drop_database(root_url, url)


@pytest.fixture
async def persistence(database_url: str) -> AsyncIterator[Persistence]:
    async with open_persistence(database_url) as opened:
        yield opened


@pytest.fixture
def fake_model() -> Iterator[FakeOpenAIServer]:
    with FakeOpenAIServer() as server:
        yield server


@pytest.fixture
def settings(database_url: str, fake_model: FakeOpenAIServer, tmp_path: Path) -> Settings:
    """Settings pointing at the test database and the fake OpenAI-compatible server."""
    return Settings(
        database_url=database_url,
        openai_base_url=fake_model.base_url,
        openai_api_key="test-key",
        model="fake-model",
        data_dir=tmp_path / "data",
        model_retries=2,
    )
