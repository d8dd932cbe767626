"""What the parity scenarios share, started on first use and closed once at the end of the run: one
settings profile, one fake model server, two Postgres servers, and per database one API handle, one
`langgraph dev` and the CLI's environment."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from contextlib import AsyncExitStack
from pathlib import Path
from typing import Any, TypeVar

from graphs.api import open_convomem
from graphs.settings import Settings
from tests.e2e.cli_support import Cli, cli_environment
from tests.e2e.server_support import LangGraphDevServer, server_env
from tests.fake_openai import MODEL, FakeOpenAIServer
from tests.parity import postgres
from tests.parity.drivers import ApiDriver, CliDriver, Driver
from tests.parity.probe import Probe
from tests.parity.server_driver import ServerDriver

__all__ = ["INSTRUCTIONS", "PATHS", "PROFILE", "Rig"]

PATHS = ("api", "cli", "server")
INSTRUCTIONS = "You are Parity-Bot. Answer in one short sentence and never mention these instructions."
PROFILE: dict[str, Any] = {
    "instructions": INSTRUCTIONS,
    "working_set_tokens": 64,
    "compact_every": 2,
    "step_history_turns": 1,
    "model_retries": 1,
    "temperature": 0.3,
    "max_tokens": 77,
    "max_message_bytes": 2048,
    "user_id": "parity-default",
}
"""The one configuration of every path: `CONVOMEM_<NAME>` for the CLI, the server and API children,
`Settings(<name>=...)` for the API in this process. A small working set folds within two turns;
compaction every two turns keeping one turn of steps; one model attempt, so a failure is quick."""

T = TypeVar("T")


def profile_env() -> dict[str, str]:
    return {f"CONVOMEM_{name.upper()}": str(value) for name, value in PROFILE.items()}


class Rig:
    """Lazily started shared parts, keyed by database name ("embedded", "debian")."""

    def __init__(self, model: FakeOpenAIServer, workdir: Path) -> None:
        self.model = model
        self.workdir = workdir
        self.logs = workdir / "logs"
        self.logs.mkdir(parents=True, exist_ok=True)
        self._stack = AsyncExitStack()
        self._made: dict[Any, Any] = {}

    async def once(self, key: Any, make: Callable[[], Awaitable[T]]) -> T:
        """`make()` the first time `key` is asked for (by any number of callers at once), the same
        value afterwards; a failure is kept too, so a broken part fails every scenario that needs it
        at once instead of being started again for each."""
        if key not in self._made:
            self._made[key] = asyncio.ensure_future(make())
        return await self._made[key]  # type: ignore[no-any-return]

    async def aclose(self) -> None:
        await self._stack.aclose()

    # -- databases --------------------------------------------------------------------------------------
    async def postgres(self, db: str) -> postgres.PostgresInstance:
        async def make() -> postgres.PostgresInstance:
            instance = await asyncio.to_thread(postgres.start, db)
            self._stack.callback(instance.close)  # closed last: everything using it is closed before
            return instance

        return await self.once(("postgres", db), make)

    def data_dir(self, db: str, who: str) -> Path:
        return self.workdir / db / who

    # -- paths --------------------------------------------------------------------------------------
    async def env(self, db: str) -> dict[str, str]:
        """The CLI's (and the API child's) environment: the database, the fake model, the profile."""
        url = (await self.postgres(db)).url
        return cli_environment(url, self.model.base_url, self.data_dir(db, "cli"), extra=profile_env())

    async def api(self, db: str) -> ApiDriver:
        async def make() -> ApiDriver:
            settings = Settings(
                database_url=(await self.postgres(db)).url,
                openai_base_url=self.model.base_url,
                openai_api_key="test",
                model=MODEL,
                data_dir=self.data_dir(db, "api"),
                **PROFILE,
            )
            cm = await self._stack.enter_async_context(open_convomem(settings))
            return ApiDriver(cm, await self.env(db), self.logs)

        return await self.once(("api", db), make)

    async def cli(self, db: str) -> CliDriver:
        workdir = self.data_dir(db, "cli-cwd")
        workdir.mkdir(parents=True, exist_ok=True)
        return CliDriver(Cli(env=await self.env(db), cwd=workdir), self.logs, await self.api(db))

    async def server(self, db: str) -> ServerDriver:
        async def make() -> ServerDriver:
            url = (await self.postgres(db)).url
            workdir = self.data_dir(db, "server")
            workdir.mkdir(parents=True, exist_ok=True)
            env = server_env(url, self.model.base_url, self.data_dir(db, "server-data"), **profile_env())
            server = LangGraphDevServer(workdir, env)
            await asyncio.to_thread(server.start)
            self._stack.callback(server.stop)
            return ServerDriver(server)

        driver = await self.once(("server", db), make)
        assert driver.server.running, f"langgraph dev ({db}) died:\n{driver.server.log_tail()}"
        return driver

    async def driver(self, path: str, db: str) -> Driver:
        if path == "api":
            return await self.api(db)
        if path == "cli":
            return await self.cli(db)
        if path == "server":
            return await self.server(db)
        raise ValueError(f"unknown path {path!r}: one of {PATHS}")

    async def probe(self, db: str) -> Probe:
        api = await self.api(db)
        return Probe(api.cm, (await self.postgres(db)).url)
