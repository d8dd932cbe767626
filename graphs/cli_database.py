"""The `convomem db` commands: set up, inspect, prune, compact and stop the database."""

from __future__ import annotations

from typing import TYPE_CHECKING, Annotated, cast, get_args

import typer

from graphs.cli import AsJson, database_app, reported_errors, run_with_database, run_with_settings
from nodes.errors import InvalidInput

if TYPE_CHECKING:
    from checkpoint.persistence import Persistence
    from checkpoint.retention import Strategy
    from graphs.settings import Settings

__all__ = ["compact_old_turns", "prune_idle_threads", "setup_tables", "show_status", "stop_server"]


async def _where(settings: Settings) -> str:
    """The server in use, without credentials (starting the embedded one if it is not running)."""
    from checkpoint.persistence import describe_url
    from graphs.database import database_url

    return describe_url(await database_url(settings))


async def _report_ready(_: Persistence, settings: Settings) -> None:
    from graphs.cli_tables import console

    console.print(f"tables ready at {await _where(settings)}")


@database_app.command("setup")
def setup_tables() -> None:
    """Create or migrate every table (idempotent)."""
    run_with_database(_report_ready, setup=True)


async def _show_status(settings: Settings, as_json: bool) -> None:
    """A stopped embedded server is reported as such, not started only to be looked at."""
    from checkpoint.embedded import embedded_status
    from checkpoint.status import database_status
    from graphs.cli_json import print_json
    from graphs.cli_tables import console, render_status
    from graphs.database import open_database_pool

    if settings.database_url is None:
        embedded = embedded_status(settings.data_dir)
        if not embedded.running:
            if as_json:
                print_json({"running": False, "data_dir": embedded.data_dir})
            else:
                console.print(f"embedded Postgres in {embedded.data_dir}: stopped")
            return
    async with open_database_pool(settings) as pool:
        where, status = await _where(settings), await database_status(pool)
    if as_json:
        print_json({"running": True, "server": where, **vars(status)})
    else:
        render_status(where, status)


@database_app.command("status")
def show_status(as_json: AsJson = False) -> None:
    """Server, applied migrations and exact row counts and sizes of the tables."""
    run_with_settings(lambda settings: _show_status(settings, as_json))


def _strategy(value: str) -> Strategy:
    from checkpoint import retention

    if value not in get_args(retention.Strategy):
        raise InvalidInput(f"Unknown strategy {value!r}: choose keep_latest or delete.")
    return cast("Strategy", value)


@database_app.command("prune")
def prune_idle_threads(
    older_than: Annotated[
        str, typer.Option("--older-than", help="Age of a thread's newest checkpoint: 30d, 12h, 90m, 2w.")
    ],
    strategy: Annotated[
        str, typer.Option(help="keep_latest (keep each thread's latest state) or delete (whole thread).")
    ] = "keep_latest",
    dry_run: Annotated[bool, typer.Option("--dry-run", help="Show what would go; change nothing.")] = False,
) -> None:
    """Prune checkpoints of idle threads (never one waiting on an interrupt or running)."""
    from checkpoint.retention import parse_duration, prune_threads
    from graphs.cli_render import render_prune

    with reported_errors():
        chosen = _strategy(strategy)
        age = parse_duration(older_than)
    run_with_database(
        lambda persistence, _: prune_threads(
            persistence.pool, persistence.checkpointer, older_than=age, strategy=chosen, dry_run=dry_run
        ),
        show=render_prune,
    )


async def _compact(
    persistence: Persistence, settings: Settings, keep_turns: int | None, thread: str | None
) -> None:
    from checkpoint.compaction import compact_thread
    from checkpoint.ids import validate_id
    from checkpoint.threads import all_thread_ids
    from graphs.cli_tables import console

    keep = settings.step_history_turns if keep_turns is None else keep_turns
    threads = [validate_id(thread)] if thread else await all_thread_ids(persistence.pool)
    for thread_id in threads:
        report = await compact_thread(persistence.pool, thread_id, keep_recent_runs=keep)
        if report.skipped or report.checkpoints_deleted:
            console.print(f"{thread_id}: {report}")
    console.print(f"{len(threads)} threads compacted (each keeps its last {keep} turns whole)")


@database_app.command("compact")
def compact_old_turns(
    keep_turns: Annotated[
        int | None, typer.Option("--keep-turns", min=0, help="Turns that keep every step (default: setting).")
    ] = None,
    thread: Annotated[str | None, typer.Option("--thread", help="Only this thread.")] = None,
) -> None:
    """Drop step checkpoints of older turns, keeping each turn's last (threads LangGraph Server ran too)."""
    run_with_database(lambda persistence, settings: _compact(persistence, settings, keep_turns, thread))


async def _stop_embedded_server(settings: Settings) -> None:
    from checkpoint.embedded import stop_embedded
    from graphs.cli_model import stopped_model_server
    from graphs.cli_tables import console

    console.print(stopped_model_server(settings))
    if settings.database_url:
        console.print("DATABASE_URL is set: that server is not managed by convomem.")
        return
    stopped = stop_embedded(settings.data_dir)
    console.print("embedded Postgres stopped" if stopped else "embedded Postgres was not running")


@database_app.command("stop")
def stop_server() -> None:
    """Stop the embedded Postgres server (DATABASE_URL servers are not ours to stop) and the local model
    server."""
    run_with_settings(_stop_embedded_server)
