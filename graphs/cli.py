"""The `convomem` command line (Typer + Rich): the root app, shared options, and how every command runs."""

from __future__ import annotations

import asyncio
import importlib
import logging
from collections.abc import Awaitable, Callable, Coroutine, Iterator
from contextlib import contextmanager
from typing import TYPE_CHECKING, Annotated, Any, TypeVar

import typer

from nodes.errors import ConfigError, ConvomemError

if TYPE_CHECKING:
    from checkpoint.connections import Pool
    from checkpoint.persistence import Persistence
    from graphs.api import Convomem
    from graphs.logs import LogLevel
    from graphs.memory_api import MemoryApi
    from graphs.settings import Settings

__all__ = [
    "AsJson",
    "Assistant",
    "BusyTimeout",
    "Checkpoint",
    "OnBusy",
    "Thread",
    "User",
    "app",
    "assistants_app",
    "checked_thread",
    "conversation_commands",
    "database_app",
    "memory_commands",
    "model_app",
    "ops_commands",
    "print_error",
    "read_settings",
    "reported_errors",
    "run_inspecting",
    "run_with",
    "run_with_database",
    "run_with_memory",
    "run_with_pool",
    "run_with_settings",
    "shown_as",
    "thread_commands",
]

T = TypeVar("T")

app = typer.Typer(
    help="convomem: a conversational agent whose memory survives everything.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    add_completion=False,
)

# The command tree is declared here, its areas in the order --help lists them; each area module defines
# its commands on its group (see _define_area_commands). Groups without a name add their commands to the root.
conversation_commands = typer.Typer()
"""chat, resume, threads, history, replay, fork: graphs/cli_conversation.py."""
thread_commands = typer.Typer()
"""archive, delete, export, import: graphs/cli_threads.py."""
memory_commands = typer.Typer()
"""entities, entity, profile, search, transcript, stats, forget: graphs/cli_memory.py."""
demo_commands = typer.Typer()
"""`demo`, defined below: a group of its own only so that --help lists it after the memory commands."""
ops_commands = typer.Typer()
"""ops, health: graphs/cli_ops.py."""
database_app = typer.Typer(help="The database: setup, status, stop.", no_args_is_help=True)
"""`convomem db`: graphs/cli_database.py."""
app.add_typer(conversation_commands)
app.add_typer(thread_commands)
app.add_typer(memory_commands)
app.add_typer(demo_commands)
app.add_typer(ops_commands)
model_app = typer.Typer(help="The embedded local model server: status, stop.", no_args_is_help=True)
"""`convomem model`: graphs/cli_model.py."""
assistants_app = typer.Typer(help="Assistant files: list, show, check.", no_args_is_help=True)
"""`convomem assistants`: graphs/cli_assistants.py."""
app.add_typer(assistants_app, name="assistants")
app.add_typer(database_app, name="db")
app.add_typer(model_app, name="model")

_verbosity: dict[str, LogLevel] = {}
"""The level -v/-vv asked for, above CONVOMEM_LOG_LEVEL."""


@app.callback()
def _root(
    verbose: Annotated[
        int,
        typer.Option(
            "--verbose", "-v", count=True, help="Log more: -v info, -vv debug (memory trace, retries)."
        ),
    ] = 0,
) -> None:
    """convomem: a conversational agent whose memory survives everything."""
    if verbose:
        _verbosity["level"] = "info" if verbose == 1 else "debug"


Thread = Annotated[str, typer.Option("--thread", "-t", help="Conversation thread id.")]
User = Annotated[str | None, typer.Option("--user", "-u", help="User id (default: CONVOMEM_USER_ID).")]
Assistant = Annotated[
    str | None,
    typer.Option(
        "--assistant", "-a", help="Assistant file to use (`convomem assistants list`); default: the thread's."
    ),
]
Checkpoint = Annotated[
    str, typer.Option("--checkpoint", "-c", help="Checkpoint id or a unique prefix of it (see `history`).")
]
AsJson = Annotated[
    bool, typer.Option("--json", help="Print the result as JSON on stdout (nothing else goes there).")
]
OnBusy = Annotated[
    str,
    typer.Option(
        "--on-busy",
        help="When another run holds the thread: reject | enqueue (wait) | rollback (cancel it) | "
        "interrupt (stop it, keep its progress).",
    ),
]
BusyTimeout = Annotated[
    float, typer.Option("--busy-timeout", min=0, help="Seconds --on-busy enqueue waits for the thread.")
]

# Heavy modules (the graph, LangChain, Postgres drivers, Rich tables) are imported inside the functions that
# use them, so `convomem --help` and typos answer without loading them.


def read_settings() -> Settings:
    """The settings from the environment; a bad value is a ConfigError naming it, not pydantic's report."""
    from pydantic import ValidationError

    from graphs.settings import Settings

    try:
        return Settings()
    except ValidationError as error:
        first = error.errors()[0]
        raise ConfigError(f"Invalid setting {'.'.join(map(str, first['loc']))}: {first['msg']}.") from error


def print_error(error: ConvomemError | str) -> None:
    """One red `error:` line on stderr; the message is shown as it is, never read as Rich markup."""
    from rich.markup import escape

    from graphs.cli_tables import errors

    errors.print(f"[red]error:[/] {escape(str(error))}")


@contextmanager
def reported_errors() -> Iterator[None]:
    """A ConvomemError becomes one `error:` line and exit 1, Ctrl-C exit 130; never a traceback."""
    try:
        yield
    except ConvomemError as error:
        print_error(error)
        raise typer.Exit(1) from None
    except KeyboardInterrupt:
        from graphs.cli_tables import errors

        errors.print("interrupted: the thread keeps its progress; continue it with `convomem resume`.")
        raise typer.Exit(130) from None


def checked_thread(thread_id: str) -> str:
    """The thread id, validated before anything starts (a typo must not start Postgres)."""
    from checkpoint.ids import validate_id

    with reported_errors():
        return validate_id(thread_id)


def run_with_settings(work: Callable[[Settings], Coroutine[Any, Any, object]]) -> None:
    """How every command runs: read the settings, run `work` with them to the end, report its errors.

    A command ends with a non-zero code by raising `typer.Exit`; its result is not an exit code.
    """
    from graphs.logs import configure_logging

    # psycopg_pool logs each failed reconnect as a warning; the command reports the failure in one line.
    logging.getLogger("psycopg.pool").setLevel(logging.ERROR)
    with reported_errors():
        settings = read_settings()
        configure_logging(_verbosity.get("level") or settings.log_level or "warning", settings.log_format)
        asyncio.run(work(settings))


def _ignore(_: object) -> None:
    """What `show` does when the work prints its own output."""


def run_with(work: Callable[[Convomem], Awaitable[T]], show: Callable[[T], object] = _ignore) -> None:
    """Open convomem, run `work` on it and `show` what it returns (see run_with_settings)."""

    async def with_convomem(settings: Settings) -> None:
        from graphs.api import open_convomem

        async with open_convomem(settings) as convomem:
            show(await work(convomem))

    run_with_settings(with_convomem)


def run_inspecting(work: Callable[[Convomem], Awaitable[T]], show: Callable[[T], object] = _ignore) -> None:
    """As run_with, for commands that only read threads: the graph without a model (none is started)."""

    async def with_convomem(settings: Settings) -> None:
        from graphs.api import open_convomem
        from nodes.models import NoModel

        async with open_convomem(settings, model=NoModel()) as convomem:
            show(await work(convomem))

    run_with_settings(with_convomem)


def run_with_database(
    work: Callable[[Persistence, Settings], Awaitable[T]],
    show: Callable[[T], object] = _ignore,
    *,
    setup: bool = False,
) -> None:
    """Open only the database (no model, no graph), migrating it when `setup`; then as run_with."""

    async def with_database(settings: Settings) -> None:
        from graphs.database import open_database

        async with open_database(settings, setup=setup) as persistence:
            show(await work(persistence, settings))

    run_with_settings(with_database)


def run_with_memory(work: Callable[[MemoryApi], Awaitable[T]], show: Callable[[T], object] = _ignore) -> None:
    """Open the database and the memory half of the API: no graph, no model (none is started)."""

    async def with_memory(settings: Settings) -> None:
        from checkpoint.transcript import open_transcript
        from graphs.database import open_database
        from graphs.memory_api import MemoryApi

        async with open_database(settings) as persistence:
            archive = await open_transcript(persistence.pool, settings.transcript_language)
            show(await work(MemoryApi(persistence, settings, archive)))

    run_with_settings(with_memory)


def run_with_pool(work: Callable[[Pool], Awaitable[T]], show: Callable[[T], object] = _ignore) -> None:
    """Open only a pool on the database (no LangGraph, no model): for commands that read tables."""

    async def with_pool(settings: Settings) -> None:
        from graphs.database import open_database_pool

        async with open_database_pool(settings) as pool:
            show(await work(pool))

    run_with_settings(with_pool)


def shown_as(render: Callable[[T], object], as_json: bool) -> Callable[[T], object]:
    """How a listing command shows its result: `render` (Rich), or with --json one JSON document."""
    if not as_json:
        return render
    from graphs.cli_json import print_json

    return print_json


@demo_commands.command()
def demo() -> None:
    """A scripted tour: memory across threads, a memory review, a killed process resumed, a replay."""
    from graphs.demo import run_demo

    run_with_settings(run_demo)


_AREA_MODULES = (
    "graphs.cli_conversation",
    "graphs.cli_threads",
    "graphs.cli_memory",
    "graphs.cli_assistants",
    "graphs.cli_database",
    "graphs.cli_model",
    "graphs.cli_ops",
)


def _define_area_commands() -> None:
    """Import the area modules, which define their commands on the groups above.

    They import this module's options and helpers, so this runs at its end; an area module imported first
    works too, since importing a module that is still loading returns it as it stands.
    """
    for module in _AREA_MODULES:
        importlib.import_module(module)


if __name__ == "__main__":
    # `python -m graphs.cli` runs this file as `__main__`, a copy the area modules never see (they import
    # `graphs.cli`): run the app of `graphs.cli`, whose groups they fill.
    from graphs.cli import app as defined_app

    defined_app()
else:
    _define_area_commands()
