"""Parity fixtures: every scenario runs once per path (api, cli, server) and per Postgres server
(embedded, debian), on shared servers started once (see rig.py), with a fresh thread and user each.

A test asks for `driver` (the path's), `probe` (reads the thread the same way for every path) and
`api` (the Python API on the same database, the reference a path's messages are compared with).
`@pytest.mark.paths("server")` limits a test to some paths (input only the server can express).
"""

from __future__ import annotations

import shutil
import tempfile
import uuid
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import pytest

from tests.fake_openai import KINDS, FakeOpenAIServer
from tests.parity.drivers import ApiDriver, Driver
from tests.parity.postgres import DATABASES, PostgresInstance
from tests.parity.probe import Probe
from tests.parity.rig import PATHS, Rig


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line("markers", "paths(*names): run a parity test on these paths only")


def pytest_generate_tests(metafunc: pytest.Metafunc) -> None:
    if "path" in metafunc.fixturenames:
        marker = metafunc.definition.get_closest_marker("paths")
        metafunc.parametrize("path", marker.args if marker else PATHS)
    if "db" in metafunc.fixturenames:
        metafunc.parametrize("db", DATABASES)


@pytest.fixture(scope="session")
def parity_model() -> Iterator[FakeOpenAIServer]:
    """One fake OpenAI-compatible server for every path and scenario (they run one at a time)."""
    with FakeOpenAIServer() as server:
        yield server


@pytest.fixture(scope="session")
async def rig(parity_model: FakeOpenAIServer) -> AsyncIterator[Rig]:
    workdir = Path(tempfile.mkdtemp(prefix="convomem-parity-"))
    shared = Rig(parity_model, workdir)
    try:
        yield shared
    finally:
        await shared.aclose()
        shutil.rmtree(workdir, ignore_errors=True)


@pytest.fixture(autouse=True)
def healthy_model(parity_model: FakeOpenAIServer) -> Iterator[FakeOpenAIServer]:
    """Each scenario starts and ends with a model that answers at once."""
    yield parity_model
    parity_model.down = False
    for kind in KINDS:
        parity_model.set_delay(kind, 0)


@pytest.fixture
async def driver(rig: Rig, path: str, db: str) -> Driver:
    return await rig.driver(path, db)


@pytest.fixture
async def api(rig: Rig, db: str) -> ApiDriver:
    return await rig.api(db)


@pytest.fixture
async def probe(rig: Rig, db: str) -> Probe:
    return await rig.probe(db)


@pytest.fixture
async def postgres(rig: Rig, db: str) -> PostgresInstance:
    return await rig.postgres(db)


@pytest.fixture
def user() -> str:
    """A user of this scenario alone, so its memory rows are its own."""
    return f"u-{uuid.uuid4().hex[:12]}"
