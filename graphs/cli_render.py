"""How the CLI shows things: Rich tables and lines, kept apart from the command wiring."""

from __future__ import annotations

import json
from typing import Any

from rich.console import Console
from rich.table import Table

from checkpoint.retention import PruneReport
from checkpoint.status import DatabaseStatus
from checkpoint.threads import ThreadSummary
from graphs.api import CheckpointInfo, PendingInterrupt, ReplyToken, TurnEnded, TurnEvent
from nodes.memory import EntityRecord

__all__ = [
    "console",
    "render_entities",
    "render_history",
    "render_interrupts",
    "render_prune",
    "render_status",
    "render_threads",
    "stream_events",
]

console = Console(highlight=False)
errors = Console(stderr=True, highlight=False, soft_wrap=True)  # one line per error, even in a pipe


async def stream_events(events: Any, *, prefix: str = "assistant> ") -> TurnEnded:
    """Print reply tokens as they arrive; return the run's final event."""
    started = False
    final: TurnEnded | None = None
    event: TurnEvent
    async for event in events:
        if isinstance(event, ReplyToken):
            if not started:
                console.print(prefix, end="", style="bold cyan")
                started = True
            console.out(event.text, end="", highlight=False)
        else:
            final = event
    if started:
        console.print()
    assert final is not None
    if final.interrupts:
        render_interrupts(final.interrupts)
    elif final.next_nodes:
        console.print(
            f"[yellow]paused before {', '.join(final.next_nodes)}[/]: continue with `convomem resume`"
        )
    return final


def render_interrupts(interrupts: tuple[PendingInterrupt, ...]) -> None:
    for pending in interrupts:
        value = pending.value
        if isinstance(value, dict) and value.get("type") == "memory_review":
            table = Table(title="Memory review: the assistant proposes to remember", title_justify="left")
            for column in ("#", "type", "value", "context"):
                table.add_column(column)
            for index, entity in enumerate(value.get("entities", []), 1):
                table.add_row(str(index), entity["type"], entity["value"], entity.get("context", ""))
            console.print(table)
        else:
            console.print(f"[yellow]interrupt[/] {json.dumps(value, default=str)}")


def render_prune(report: PruneReport) -> None:
    verb = "would prune" if report.dry_run else "pruned"
    console.print(
        f"{verb} {len(report.pruned)} of {report.examined} threads idle since "
        f"{report.cutoff:%Y-%m-%d %H:%M} UTC ({report.strategy}): {report.checkpoints} checkpoints, "
        f"{report.bytes / 1024:.0f} KiB"
    )
    if report.pruned:
        table = Table("thread", "checkpoints", "KiB")
        for thread in report.pruned:
            table.add_row(thread.thread_id, str(thread.checkpoints), f"{thread.bytes / 1024:.0f}")
        console.print(table)
    reasons = {
        "interrupt": "waits for an answer — `convomem resume --thread {thread}`",
        "running": "a run is in progress",
    }
    for skipped in report.skipped:
        why = reasons.get(skipped.reason, "{detail}").format(thread=skipped.thread_id, detail=skipped.detail)
        console.print(f"skipped {skipped.thread_id}: {why}")
    if report.dry_run:
        console.print("dry run: nothing changed")


def render_threads(threads: list[ThreadSummary]) -> None:
    table = Table("thread", "checkpoints", "updated")
    for thread in threads:
        table.add_row(thread.thread_id, str(thread.checkpoints), thread.updated_at)
    console.print(table if threads else "no threads yet")


def render_history(history: list[CheckpointInfo]) -> None:
    table = Table("checkpoint", "step", "time", "node", "next", "messages")
    for info in history:
        table.add_row(
            info.checkpoint_id,
            str(info.step),
            info.created_at or "",
            ", ".join(info.ran) or info.source,
            ", ".join(info.next_nodes),
            str(info.messages),
        )
    console.print(table)


def render_entities(entities: list[EntityRecord]) -> None:
    table = Table("type", "value", "aliases", "mentions", "threads", "last seen")
    for entity in entities:
        table.add_row(
            entity.type,
            entity.value,
            ", ".join(entity.aliases),
            str(entity.mentions),
            str(len(entity.threads)),
            entity.last_seen[:19],
        )
    console.print(table if entities else "nothing remembered yet")


def render_status(where: str, status: DatabaseStatus) -> None:
    console.print(f"Postgres {status.server_version} at {where}")
    console.print("upstream migrations: " + ", ".join(f"{k}={v}" for k, v in status.migrations.items()))
    for applied in status.project_migrations:
        console.print(f"project migration {applied.name}: applied {applied.applied_at:%Y-%m-%d %H:%M}")
    if status.pending_migrations:
        console.print(f"[yellow]pending: {', '.join(status.pending_migrations)}[/] — run `convomem db setup`")
    table = Table("table", "rows (est.)", "size")
    for size in status.tables:
        table.add_row(size.name, str(size.rows), f"{size.bytes / 1024:.0f} KiB")
    console.print(table)
