"""The `convomem ops` and `convomem health` commands: how it is running, and whether it is healthy."""

from __future__ import annotations

import asyncio
from typing import TYPE_CHECKING, Annotated, Any

import typer

from graphs.cli import AsJson, ops_commands, reported_errors, run_with_pool, run_with_settings

if TYPE_CHECKING:
    from datetime import timedelta

    from rich.console import Group

    from checkpoint.persistence import Pool
    from graphs.operations import HealthReport, OpsReport
    from graphs.settings import Settings

__all__ = ["health_view", "ops_view", "show_health", "show_ops"]

WATCH_SECONDS = 2.0
"""How often `ops --watch` reads the window again."""


def _seconds(value: float | None) -> str:
    return "-" if value is None else f"{value:.3f}s"


def ops_view(report: OpsReport) -> Group:
    """The window as Rich tables: summary, latency percentiles, time per node, the error report."""
    from rich.console import Group
    from rich.table import Table

    who = f"user {report.user_id}" if report.user_id else "all users"
    statuses = ", ".join(f"{status} {n}" for status, n in sorted(report.by_status.items())) or "no runs"
    estimated = " (estimated)" if report.tokens_estimated else ""
    summary = (
        f"since {report.since:%Y-%m-%d %H:%M:%S} UTC, {who}: {report.turns} turns ({statuses}), "
        f"error rate {report.error_rate:.1%}, tokens in {report.input_tokens} / out {report.output_tokens}"
        f"{estimated}"
    )
    latency = Table("latency", "p50", "p95", "p99")
    for name, values in (("turn", report.turn_seconds), ("first token", report.first_token_seconds)):
        latency.add_row(name, *(_seconds(values[p]) for p in ("p50", "p95", "p99")))
    parts: list[Any] = [summary, latency]
    if report.node_seconds:
        nodes = Table("node", "avg")
        for node, seconds in report.node_seconds.items():
            nodes.add_row(node, _seconds(seconds))
        parts.append(nodes)
    if report.error_report:
        errors = Table("error", "count", "last", "last message")
        for group in report.error_report:
            errors.add_row(
                group.error_class, str(group.count), f"{group.last_at:%H:%M:%S}", group.last_message
            )
        parts.append(errors)
    return Group(*parts)


async def _ops(pool: Pool, window: timedelta, user_id: str | None, as_json: bool, watch: bool) -> None:
    from graphs.cli_json import print_json
    from graphs.cli_tables import console
    from graphs.conversation import utc_now
    from graphs.operations import ops_report

    async def read() -> OpsReport:
        return await ops_report(pool, window=window, now=utc_now(), user_id=user_id)

    if not watch:
        report = await read()
        print_json(report) if as_json else console.print(ops_view(report))
        return
    from contextlib import nullcontext

    from rich.live import Live

    # A terminal redraws in place; a pipe or file (where Live shows nothing until it stops) gets each
    # refresh printed after the last.
    live = Live(console=console, auto_refresh=False) if console.is_terminal else None
    with live or nullcontext():
        try:
            while True:
                view = ops_view(await read())
                live.update(view, refresh=True) if live else console.print(view)
                await asyncio.sleep(WATCH_SECONDS)
        except asyncio.CancelledError:
            return  # Ctrl-C: asyncio.run cancels this task; returning from it ends the command with 0


@ops_commands.command("ops")
def show_ops(
    window: Annotated[
        str, typer.Option("--window", "-w", help="How far back: 15m, 1h, 24h, 7d (runs started since).")
    ] = "1h",
    user: Annotated[
        str | None, typer.Option("--user", "-u", help="Only this user's runs (default: all).")
    ] = None,
    as_json: AsJson = False,
    watch: Annotated[bool, typer.Option("--watch", help="Refresh every 2 s until Ctrl-C.")] = False,
) -> None:
    """Turns, error rate, p50/p95/p99 of turn time and time to first token, tokens, time per node, errors."""
    from checkpoint.ids import validate_user_id
    from checkpoint.retention import parse_duration
    from nodes.errors import InvalidInput

    with reported_errors():
        age = parse_duration(window)
        user_id = validate_user_id(user) if user is not None else None
        if watch and as_json:
            raise InvalidInput("--watch redraws a table; use --json without --watch (e.g. in a loop).")
    run_with_pool(lambda pool: _ops(pool, age, user_id, as_json, watch))


def health_view(report: HealthReport) -> str:
    """The verdict, then one line per check."""
    width = max(len(check.name) for check in report.checks)
    lines: list[str] = [report.status]
    lines += [f"{check.name:<{width}}  {check.status:<8}  {check.detail}" for check in report.checks]
    return "\n".join(lines)


async def _health(settings: Settings, as_json: bool) -> None:
    from graphs.cli_json import print_json
    from graphs.cli_tables import console
    from graphs.conversation import utc_now
    from graphs.operations import check_health

    report = await check_health(settings, now=utc_now())
    if as_json:
        print_json({"status": report.status, "exit_code": report.exit_code, "checks": report.checks})
    else:
        console.print(health_view(report), markup=False, soft_wrap=True)
    raise typer.Exit(report.exit_code)


@ops_commands.command("health")
def show_health(as_json: AsJson = False) -> None:
    """Check database, migrations, model server, recent error rate: exit 0 healthy, 1 degraded, 2 down."""
    run_with_settings(lambda settings: _health(settings, as_json))
