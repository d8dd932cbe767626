"""Shared fixtures: one embedded Postgres per run, a fresh database per test, the fake model server."""

from __future__ import annotations

import tempfile
import uuid
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import psycopg
import pytest
from psycopg.conninfo import conninfo_to_dict, make_conninfo

from checkpoint.embedded import start_embedded, stop_embedded
from checkpoint.persistence import Persistence, open_persistence
from graphs.settings import Settings
from tests.fake_openai import FakeOpenAIServer


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
    name = f"t_{uuid.uuid4().hex[:16]}"
    with psycopg.connect(root_url, autocommit=True) as conn:
        conn.execute(f'CREATE DATABASE "{name}"')
    params = conninfo_to_dict(root_url)
    params["dbname"] = name
    yield make_conninfo(**params)  # type: ignore[arg-type]
    with psycopg.connect(root_url, autocommit=True) as conn:
        conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


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
