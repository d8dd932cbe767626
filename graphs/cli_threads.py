"""The thread commands: archive one conversation, delete it, export it to a file, import it elsewhere."""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer

from graphs.cli import (
    Thread,
    checked_thread,
    reported_errors,
    run_inspecting,
    run_with_database,
    run_with_pool,
    thread_commands,
)
from nodes.errors import InvalidInput

if TYPE_CHECKING:
    from checkpoint.connections import Pool
    from checkpoint.persistence import Persistence
    from checkpoint.thread_info import ThreadDeleted
    from graphs.api import Convomem
    from graphs.settings import Settings

__all__ = ["archive", "delete", "export", "import_"]


@thread_commands.command()
def archive(
    thread: Thread,
    undo: Annotated[bool, typer.Option("--undo", help="Make the thread active again.")] = False,
) -> None:
    """Hide a thread from `threads` (`--status archived` lists it); a new message makes it active again."""
    from checkpoint.thread_info import set_thread_status
    from graphs.cli_tables import console

    checked_thread(thread)

    async def work(pool: Pool) -> None:
        await set_thread_status(pool, thread, "active" if undo else "archived")
        console.print(f"thread {thread} {'active again' if undo else 'archived'}")

    run_with_pool(work)


@thread_commands.command()
def delete(
    thread: Thread,
    keep_transcript: Annotated[
        bool, typer.Option("--keep-transcript", help="Keep its messages in the transcript (searchable).")
    ] = False,
    with_transcript: Annotated[
        bool, typer.Option("--with-transcript", help="Delete its messages from the transcript too.")
    ] = False,
    yes: Annotated[bool, typer.Option("--yes", "-y", help="Do not ask for confirmation.")] = False,
) -> None:
    """Delete a thread: its checkpoints and its row, and its transcript when asked (at a terminal the
    question is asked). Refused while a run holds the thread. The user's long-term memory stays."""
    from graphs.cli_tables import console

    checked_thread(thread)
    with reported_errors():
        drop_transcript = _transcript_choice(thread, keep_transcript, with_transcript, yes)

    async def work(persistence: Persistence, settings: Settings) -> ThreadDeleted:
        from checkpoint.thread_info import delete_thread

        pool, saver = persistence.pool, persistence.checkpointer
        return await delete_thread(pool, saver, thread, with_transcript=drop_transcript)

    def show(done: ThreadDeleted) -> None:
        kept = "transcript kept" if not drop_transcript else f"{done.transcript_messages} transcript messages"
        console.print(f"thread {thread} deleted ({kept})")

    run_with_database(work, show)


def _transcript_choice(thread: str, keep: bool, drop: bool, yes: bool) -> bool:
    """Whether the transcript goes too: from the flags, else asked at a terminal; never guessed."""
    if keep and drop:
        raise InvalidInput("Give --keep-transcript or --with-transcript, not both.")
    interactive = sys.stdin.isatty()
    if not interactive and not (yes and (keep or drop)):
        raise InvalidInput(
            "Not at a terminal: `convomem delete` needs --yes and --keep-transcript or --with-transcript."
        )
    if not yes and not typer.confirm(f"Delete thread {thread}?", default=False):
        raise InvalidInput(f"Nothing deleted: thread {thread!r} stays.")
    if keep or drop:
        return drop
    return typer.confirm("Delete its messages from the transcript too?", default=False)


@thread_commands.command()
def export(
    thread: Thread,
    output: Annotated[
        Path | None, typer.Option("--output", "-o", help="Write to this file (default: stdout).")
    ] = None,
) -> None:
    """Export a thread (its state, summary and whole transcript) to portable JSON; not the user's
    long-term memory (entities, profile)."""
    from graphs.cli_tables import errors

    checked_thread(thread)

    async def work(cm: Convomem) -> None:
        document = await cm.export_thread(thread)
        text = json.dumps(document, ensure_ascii=False, indent=2) + "\n"
        if output is None:
            sys.stdout.write(text)
            return
        try:
            output.write_text(text, encoding="utf-8")
        except OSError as error:
            raise InvalidInput(f"Cannot write {output}: {error.strerror or error}.") from None
        count = len(document["transcript"])
        errors.print(f"exported thread {thread} ({count} messages) to {output}")

    run_inspecting(work)


@thread_commands.command("import")
def import_(
    file: Annotated[Path, typer.Argument(help="A file `convomem export` wrote ('-' reads stdin).")],
    thread: Annotated[
        str | None, typer.Option("--thread", "-t", help="Import under this id (default: the exported id).")
    ] = None,
) -> None:
    """Import an exported thread, on this or another database; the conversation continues from there."""
    from graphs.cli_tables import console
    from graphs.thread_admin import read_export

    with reported_errors():  # the file is checked before the database starts
        document = read_export(_read(file))
        if thread is not None:
            checked_thread(thread)

    async def work(cm: Convomem) -> str:
        return await cm.import_thread(document, thread_id=thread)

    run_inspecting(work, show=lambda created: console.print(f"imported thread {created}"))


def _read(file: Path) -> str:
    try:
        raw = sys.stdin.buffer.read() if str(file) == "-" else file.read_bytes()
        return raw.decode("utf-8")
    except OSError as error:
        raise InvalidInput(f"Cannot read {file}: {error.strerror or error}.") from None
    except UnicodeDecodeError as error:
        raise InvalidInput(f"{file} is not UTF-8 text (byte {error.start}).") from None
