"""The conversation commands: chat on a thread, resume, replay or fork it, list threads and history."""

from __future__ import annotations

import json
import sys
from collections.abc import AsyncIterator, Callable
from typing import TYPE_CHECKING, Annotated, Any, cast, get_args

import typer
from rich.markup import escape

from checkpoint.locks import BUSY_TIMEOUT, check_on_busy
from graphs.cli import (
    BusyTimeout,
    Checkpoint,
    OnBusy,
    Thread,
    User,
    conversation_commands,
    print_error,
    reported_errors,
    run_with,
)
from graphs.events import PendingInterrupt, TurnEvent
from nodes.errors import InvalidInput

if TYPE_CHECKING:
    from graphs.api import Convomem
    from graphs.settings import Durability

__all__ = ["chat", "fork", "history", "replay", "resume", "threads"]

StartTurn = Callable[["Convomem", dict[str, Any]], AsyncIterator[TurnEvent]]
"""Starts a turn on convomem with the checked --on-busy options."""


# -- checks of the command line, made before anything is opened ----------------------------------------
def _read_stdin() -> str:
    try:
        return sys.stdin.buffer.read().decode("utf-8")
    except UnicodeDecodeError as error:
        raise InvalidInput(f"Standard input is not valid UTF-8 (byte {error.start}): re-encode it.") from None


def _known_nodes(names: list[str]) -> list[str]:
    from graphs.conversation import NODES

    unknown = [n for n in names if n not in NODES]
    if unknown:
        raise InvalidInput(f"Unknown node {unknown[0]!r}: choose from {', '.join(NODES)}.")
    return names


def _durability(value: str | None) -> Durability | None:
    from graphs import settings

    if value is None or value in get_args(settings.Durability):
        return cast("Durability | None", value)
    raise InvalidInput(f"Unknown durability {value!r}: choose sync, async or exit.")


def _busy_options(on_busy: str, busy_timeout: float) -> dict[str, Any]:
    return {"on_busy": check_on_busy(on_busy), "busy_timeout": busy_timeout}


def _review_answer(raw: str | None) -> Any:
    """--value as JSON, or a bare word such as approve / reject."""
    if raw is None:
        return None
    try:
        return json.loads(raw)
    except json.JSONDecodeError:
        if raw.strip().isidentifier():
            return raw.strip()
        raise InvalidInput(f"--value is neither JSON nor a single word: {raw[:40]!r}.") from None


# -- a person at the terminal ---------------------------------------------------------------------------
def _ask_review_answer(pending: tuple[PendingInterrupt, ...]) -> Any:
    """Interactive answer to a memory review: approve, reject, or keep only some numbers."""
    from graphs.cli_render import console

    entities: list[Any] = next((p.value["entities"] for p in pending if isinstance(p.value, dict)), [])
    while True:
        answer = typer.prompt(
            "remember these? [a]pprove / [r]eject / numbers to keep (e.g. 1,3)", default="a"
        )
        answer = answer.strip().lower()
        if answer in ("a", "approve", "y", "yes"):
            return "approve"
        if answer in ("r", "reject", "n", "no"):
            return "reject"
        try:
            keep = {int(part) for part in answer.split(",") if part.strip()}
        except ValueError:
            console.print("answer a, r, or numbers separated by commas")
            continue
        return [entity for index, entity in enumerate(entities, 1) if index in keep]


async def _converse(cm: Convomem, thread: str, user: str | None, text: str, options: dict[str, Any]) -> None:
    """One message and its reply; at a terminal, memory reviews are asked and answered on the spot."""
    from graphs.cli_render import stream_events

    final = await stream_events(cm.chat(thread, text, user_id=user, **options))
    while final.interrupts and sys.stdin.isatty():
        answer = _ask_review_answer(final.interrupts)
        final = await stream_events(cm.resume(thread, answer, user_id=user))


async def _finish_pending(cm: Convomem, thread: str, user: str | None) -> None:
    """A thread that waits (review, breakpoint, killed run) is shown first and answered or resumed."""
    from graphs.api import unfinished
    from graphs.cli_render import console, render_interrupts, stream_events

    snapshot = await cm.state(thread)
    pending = await cm.pending_interrupts(thread)
    if pending:
        render_interrupts(pending)
        if sys.stdin.isatty():
            await stream_events(cm.resume(thread, _ask_review_answer(pending), user_id=user))
    elif unfinished(snapshot):
        console.print(f"[yellow]this thread has an unfinished turn (next: {', '.join(snapshot.next)})[/]")
        if sys.stdin.isatty() and typer.confirm("finish it now?", default=True):
            await stream_events(cm.resume(thread, user_id=user))


async def _session(cm: Convomem, thread: str, user: str | None, options: dict[str, Any]) -> None:
    """Line after line until Ctrl-D or /quit; a refused message is reported and the session goes on."""
    from graphs.cli_render import console

    console.print(f"[bold]convomem[/] — thread [cyan]{escape(thread)}[/]; Ctrl-D or /quit to leave.")
    await _finish_pending(cm, thread, user)
    while True:
        try:
            text = input("you> ")
        except EOFError:
            return
        except UnicodeDecodeError:
            print_error("that line is not valid UTF-8; type it again.")
            continue
        if text.strip() == "/quit":
            return
        if not text.strip():
            continue
        try:
            await _converse(cm, thread, user, text, options)
        except InvalidInput as error:
            print_error(error)


def _stream_turn(on_busy: str, busy_timeout: float, start: StartTurn) -> None:
    """Check --on-busy, then stream the turn `start` begins with it."""
    from graphs.cli_render import stream_events

    with reported_errors():
        busy = _busy_options(on_busy, busy_timeout)
    run_with(lambda cm: stream_events(start(cm, busy)))


# -- the commands ---------------------------------------------------------------------------------------
@conversation_commands.command()
def chat(
    thread: Thread = "default",
    user: User = None,
    message: Annotated[
        str | None, typer.Option("--message", "-m", help="Send one message and exit; '-' reads stdin.")
    ] = None,
    review: Annotated[bool, typer.Option(help="Review what the assistant remembers.")] = False,
    interrupt_before: Annotated[list[str] | None, typer.Option(help="Pause before this node.")] = None,
    interrupt_after: Annotated[list[str] | None, typer.Option(help="Pause after this node.")] = None,
    durability: Annotated[
        str | None, typer.Option(help="sync (default) | async | exit: when checkpoints are written.")
    ] = None,
    on_busy: OnBusy = "reject",
    busy_timeout: BusyTimeout = BUSY_TIMEOUT,
) -> None:
    """Chat on a thread; the reply streams. Without --message, an interactive session (Ctrl-D quits)."""
    with reported_errors():
        options: dict[str, Any] = {
            "review_memory": review,
            "interrupt_before": _known_nodes(interrupt_before or []),
            "interrupt_after": _known_nodes(interrupt_after or []),
            "durability": _durability(durability),
            **_busy_options(on_busy, busy_timeout),
        }
        one_shot = _read_stdin() if message == "-" else message
    if one_shot is None:
        run_with(lambda cm: _session(cm, thread, user, options))
    else:
        run_with(lambda cm: _converse(cm, thread, user, one_shot, options))


@conversation_commands.command()
def resume(
    thread: Thread,
    user: User = None,
    value: Annotated[
        str | None, typer.Option("--value", help="Answer to the interrupt: approve, reject or JSON.")
    ] = None,
    on_busy: OnBusy = "reject",
    busy_timeout: BusyTimeout = BUSY_TIMEOUT,
) -> None:
    """Answer a pending interrupt, continue past a breakpoint, or finish a run a crash cut short."""
    with reported_errors():
        answer = _review_answer(value)
    _stream_turn(on_busy, busy_timeout, lambda cm, busy: cm.resume(thread, answer, user_id=user, **busy))


@conversation_commands.command()
def threads(limit: Annotated[int, typer.Option(min=1)] = 50) -> None:
    """List threads, most recently active first."""
    from graphs.cli_render import render_threads

    run_with(lambda cm: cm.threads(limit=limit), show=render_threads)


@conversation_commands.command()
def history(thread: Thread, limit: Annotated[int, typer.Option(min=1)] = 30) -> None:
    """A thread's checkpoints, newest first: node, time, step."""
    from graphs.cli_render import render_history

    run_with(lambda cm: cm.history(thread, limit=limit), show=render_history)


@conversation_commands.command()
def replay(
    thread: Thread,
    checkpoint: Checkpoint,
    user: User = None,
    on_busy: OnBusy = "reject",
    busy_timeout: BusyTimeout = BUSY_TIMEOUT,
) -> None:
    """Re-run a thread from a past checkpoint."""
    _stream_turn(on_busy, busy_timeout, lambda cm, busy: cm.replay(thread, checkpoint, user_id=user, **busy))


@conversation_commands.command()
def fork(
    thread: Thread,
    checkpoint: Checkpoint,
    message: Annotated[str, typer.Option("--message", "-m", help="The message the branch sends instead.")],
    user: User = None,
    on_busy: OnBusy = "reject",
    busy_timeout: BusyTimeout = BUSY_TIMEOUT,
) -> None:
    """Branch a thread at a past checkpoint with a different message."""
    _stream_turn(
        on_busy, busy_timeout, lambda cm, busy: cm.fork(thread, checkpoint, message, user_id=user, **busy)
    )
