"""The CLI's consoles and the tables of the commands that must answer fast (threads, history, db status):
Rich only, no LangGraph or LangChain import."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from rich.console import Console
from rich.markup import escape
from rich.table import Column, Table

if TYPE_CHECKING:
    from checkpoint.status import DatabaseStatus
    from checkpoint.thread_info import ThreadInfo
    from graphs.events import CheckpointInfo

__all__ = [
    "CHECKPOINT_ID_CHARS",
    "console",
    "errors",
    "render_assistants",
    "render_history",
    "render_status",
    "render_threads",
]

CHECKPOINT_ID_CHARS = 36
"""A checkpoint id is a UUID in text form."""

console = Console(highlight=False)
errors = Console(stderr=True, highlight=False, soft_wrap=True)  # one line per error, even in a pipe


def render_threads(threads: list[ThreadInfo]) -> None:
    # One line per thread: the id whole (the other commands take it), the title cut to fit.
    title = Column("title", no_wrap=True, overflow="ellipsis")
    table = Table(Column("thread", no_wrap=True), title, "user", "status", "messages", "updated")
    for thread in threads:
        table.add_row(
            thread.thread_id,
            escape(thread.title) or "[dim](untitled)[/]",
            escape(thread.user_id or ""),
            thread.status,
            str(thread.messages),
            thread.updated_at[:19].replace("T", " "),
        )
    console.print(table if threads else "no threads")


def render_history(history: list[CheckpointInfo]) -> None:
    # The id is what replay and fork take: never wrapped or cut, the other columns give way.
    whole_id = Column("checkpoint", no_wrap=True, min_width=CHECKPOINT_ID_CHARS)
    table = Table(whole_id, "step", "time", "node", "next", "messages")
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


def render_status(where: str, status: DatabaseStatus) -> None:
    console.print(f"Postgres {status.server_version} at {where}")
    console.print("upstream migrations: " + ", ".join(f"{k}={v}" for k, v in status.migrations.items()))
    for applied in status.project_migrations:
        console.print(f"project migration {applied.name}: applied {applied.applied_at:%Y-%m-%d %H:%M}")
    if status.pending_migrations:
        console.print(f"[yellow]pending: {', '.join(status.pending_migrations)}[/] — run `convomem db setup`")
    table = Table("table", "rows", "size")
    for size in status.tables:
        table.add_row(size.name, str(size.rows), f"{size.bytes / 1024:.0f} KiB")
    console.print(table)


def render_assistants(folder: str, assistants: list[dict[str, Any]]) -> None:
    table = Table("assistant", "description", "sets")
    for found in assistants:
        sets = [key for key in found if key not in ("name", "description", "file")]
        table.add_row(found["name"], escape(found.get("description", "")), ", ".join(sets))
    console.print(f"assistants in {folder}")
    console.print(table if assistants else "no assistant files (*.toml)")
