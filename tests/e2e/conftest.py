"""CLI end-to-end fixtures: the real `convomem` command, run as a subprocess against the test's own
database on the embedded Postgres and the in-process fake OpenAI-compatible server (over HTTP)."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.e2e.cli_support import Cli, cli_environment
from tests.fake_openai import FakeOpenAIServer


@pytest.fixture
def cli(database_url: str, fake_model: FakeOpenAIServer, tmp_path: Path) -> Cli:
    """`convomem` on this test's database and fake model; runs in an empty working directory."""
    workdir = tmp_path / "cwd"
    workdir.mkdir()
    return Cli(env=cli_environment(database_url, fake_model.base_url, tmp_path / "data"), cwd=workdir)


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line("markers", "slow: end-to-end tests that take several seconds each")
