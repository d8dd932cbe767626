"""The conversation commands: chat on a thread, resume, replay or fork it, list threads and history."""

from __future__ import annotations

import json
import sys
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import TYPE_CHECKING, Annotated, Any, cast, get_args

import typer

from checkpoint.on_busy import BUSY_TIMEOUT, check_on_busy
from graphs.cli import (
    AsJson,
    Assistant,
    BusyTimeout,
    Checkpoint,
    OnBusy,
    Thread,
    User,
    checked_thread,
    conversation_commands,
    reported_errors,
    run_inspecting,
    run_with,
    run_with_pool,
    shown_as,
)
from graphs.cli_assistants import checked_assistant
from graphs.events import TurnEvent
from nodes.errors import InvalidInput

if TYPE_CHECKING:
    from checkpoint.connections import Pool
    from checkpoint.thread_info import ThreadInfo
    from graphs.api import Convomem
    from graphs.settings import Durability

__all__ = ["chat", "fork", "history", "pending", "replay", "resume", "show_opening", "threads"]

StartTurn = Callable[["Convomem", dict[str, Any]], AsyncIterator[TurnEvent]]
"""Starts a turn on convomem with the checked --on-busy options."""


# -- checks of the command line, made before anything is opened ----------------------------------------
def _read_stdin() -> str:
    try:
        return sys.stdin.buffer.read().decode("utf-8")
    except UnicodeDecodeError as error:
        raise InvalidInput(f"Standard input is not valid UTF-8 (byte {error.start}): re-encode it.") from None


def _known_nodes(names: list[str]) -> list[str]:
    from graphs.conversation import NODES, TOOL_NODE

    known = (*NODES, TOOL_NODE)
    unknown = [n for n in names if n not in known]
    if unknown:
        raise InvalidInput(f"Unknown node {unknown[0]!r}: choose from {', '.join(known)}.")
    return names


def _durability(value: str | None) -> Durability | None:
    from graphs import settings

    if value is None or value in get_args(settings.Durability):
        return cast("Durability | None", value)
    raise InvalidInput(f"Unknown durability {value!r}: choose sync, async or exit.")


def _busy_options(on_busy: str, busy_timeout: float) -> dict[str, Any]:
    return {"on_busy": check_on_busy(on_busy), "busy_timeout": busy_timeout}


def _review_answer(raw: str | None) -> Any:
    """--value as the prompt teaches it: approve, reject, numbers to keep, or a JSON list of entities."""
    from nodes.review import read_review_answer

    return None if raw is None else read_review_answer(raw)


# -- a person at the terminal ---------------------------------------------------------------------------
async def show_opening(cm: Convomem, thread: str, assistant: str | None) -> None:
    """A new thread's first message, printed as the assistant's first line (the turn writes it)."""
    from graphs.cli_render import print_reply

    first = await cm.opening(thread, assistant)
    if first is not None:
        print_reply(first)


async def _converse(cm: Convomem, thread: str, user: str | None, text: str, options: dict[str, Any]) -> None:
    """One message and its reply; at a terminal, memory reviews are asked and answered on the spot."""
    from graphs.cli_render import stream_events
    from graphs.cli_review import answer_reviews
    from graphs.cli_session import Terminal

    await show_opening(cm, thread, options.get("assistant"))
    final = await stream_events(cm.chat(thread, text, user_id=user, **options))
    if final.interrupts and sys.stdin.isatty():
        term = Terminal(interactive=True)
        await answer_reviews(cm, thread, user, final.interrupts, term.line, stream_events)


async def _resume(cm: Convomem, thread: str, user: str | None, answer: Any, busy: dict[str, Any]) -> None:
    """Without an answer a pending review is asked at a terminal and refused elsewhere, never approved."""
    from graphs.api import answers_for
    from graphs.cli_render import render_interrupts, stream_events
    from graphs.cli_review import answer_reviews, confirm_stored, forget_question, memory_review
    from graphs.cli_session import Terminal

    await cm.require_thread(thread)
    pending = await cm.pending_interrupts(thread)
    review = memory_review(pending)
    if (review is not None or forget_question(pending) is not None) and answer is None:
        if not sys.stdin.isatty():
            raise InvalidInput(
                f"Thread {thread!r} waits for an answer: add --value with {answers_for(pending)} "
                f"(`convomem pending --thread {thread}` shows the question)."
            )
        render_interrupts(pending)
        term = Terminal(interactive=True)
        run = lambda events: stream_events(events)  # noqa: E731
        await answer_reviews(cm, thread, user, pending, term.line, run)
        return
    final = await stream_events(cm.resume(thread, answer, user_id=user, **busy))
    if review is not None and not final.interrupts:
        await confirm_stored(cm, thread, review, answer)


def _stream_turn(on_busy: str, busy_timeout: float, start: StartTurn) -> None:
    """Check --on-busy, then stream the turn `start` begins with it."""
    from graphs.cli_render import stream_events

    with reported_errors():
        busy = _busy_options(on_busy, busy_timeout)
    run_with(lambda cm: stream_events(start(cm, busy)))


# -- the commands ---------------------------------------------------------------------------------------
NewThread = Annotated[
    str | None, typer.Option("--thread", "-t", help="Conversation thread id (default: a new thread).")
]


def _thread_or_new(thread: str | None) -> str:
    """The given thread, or a new id, announced on stderr (stdout stays the reply) so it can be continued."""
    if thread is not None:
        return thread
    from checkpoint.thread_info import new_thread_id
    from graphs.cli_tables import errors

    created = new_thread_id()
    errors.print(f"thread {created} (new): continue it with --thread {created}")
    return created


@conversation_commands.command()
def chat(
    thread: NewThread = None,
    user: User = None,
    message: Annotated[
        str | None, typer.Option("--message", "-m", help="Send one message and exit; '-' reads stdin.")
    ] = None,
    assistant: Assistant = None,
    review: Annotated[
        bool | None,
        typer.Option(
            "--review/--no-review", help="Review what the assistant remembers (default: the assistant's)."
        ),
    ] = None,
    interrupt_before: Annotated[list[str] | None, typer.Option(help="Pause before this node.")] = None,
    interrupt_after: Annotated[list[str] | None, typer.Option(help="Pause after this node.")] = None,
    durability: Annotated[
        str | None, typer.Option(help="sync (default) | async | exit: when checkpoints are written.")
    ] = None,
    on_busy: OnBusy = "reject",
    busy_timeout: BusyTimeout = BUSY_TIMEOUT,
) -> None:
    """Chat on a thread (without --thread, a new one); the reply streams. Without --message, an
    interactive session (Ctrl-D quits)."""
    with reported_errors():
        options: dict[str, Any] = {
            "review_memory": review,
            "assistant": checked_assistant(assistant),
            "interrupt_before": _known_nodes(interrupt_before or []),
            "interrupt_after": _known_nodes(interrupt_after or []),
            "durability": _durability(durability),
            **_busy_options(on_busy, busy_timeout),
        }
        one_shot = _read_stdin() if message == "-" else message
        chosen = _thread_or_new(thread if thread is None else checked_thread(thread))
    if one_shot is None:
        from graphs.cli_session import run_session

        run_with(lambda cm: run_session(cm, chosen, user, options))
    else:
        run_with(lambda cm: _converse(cm, chosen, user, one_shot, options))


@conversation_commands.command()
def resume(
    thread: Thread,
    user: User = None,
    value: Annotated[
        str | None,
        typer.Option(
            "--value", help="The review answer: approve, reject, numbers to keep (1,3) or a JSON entity list."
        ),
    ] = None,
    assistant: Assistant = None,
    on_busy: OnBusy = "reject",
    busy_timeout: BusyTimeout = BUSY_TIMEOUT,
) -> None:
    """Answer a pending interrupt, continue past a breakpoint, or finish a run a crash cut short.

    A memory review needs an answer: --value, or at a terminal the prompt; it is never approved by default.
    """
    with reported_errors():
        answer = _review_answer(value)
        busy = {**_busy_options(on_busy, busy_timeout), "assistant": checked_assistant(assistant)}
    run_with(lambda cm: _resume(cm, thread, user, answer, busy))


@conversation_commands.command()
def pending(
    thread: Thread, as_json: Annotated[bool, typer.Option("--json", help="One JSON document.")] = False
) -> None:
    """What a thread waits for: its memory review (numbered as --value keeps them) or unfinished turn."""
    from graphs.cli_review import pending_report, render_pending, thread_pending

    def show(found: tuple[dict[str, Any] | None, tuple[str, ...]]) -> None:
        if as_json:
            print(json.dumps(pending_report(thread, *found), ensure_ascii=False))
        else:
            render_pending(thread, *found)

    async def find(cm: Convomem) -> tuple[dict[str, Any] | None, tuple[str, ...]]:
        await cm.require_thread(thread)
        return await thread_pending(cm, thread)

    run_inspecting(find, show=show)


@conversation_commands.command()
def threads(
    user: Annotated[str | None, typer.Option("--user", "-u", help="Only this user's threads.")] = None,
    search: Annotated[
        str | None, typer.Option("--search", "-s", help="Only titles containing this text (any case).")
    ] = None,
    status: Annotated[str, typer.Option(help="active (default) | archived | all.")] = "active",
    limit: Annotated[int, typer.Option(min=1)] = 50,
    as_json: AsJson = False,
) -> None:
    """List threads, most recently updated first: title, user, status, messages, updated."""
    from checkpoint.thread_info import list_thread_infos
    from graphs.cli_tables import render_threads

    def listed(pool: Pool) -> Awaitable[list[ThreadInfo]]:
        return list_thread_infos(pool, user_id=user, search=search, status=status, limit=limit)

    run_with_pool(listed, show=shown_as(render_threads, as_json))


@conversation_commands.command()
def history(thread: Thread, limit: Annotated[int, typer.Option(min=1)] = 30, as_json: AsJson = False) -> None:
    """A thread's checkpoints, newest first: full id (replay and fork take any unique prefix), node, time."""
    from graphs.cli_tables import render_history

    checked_thread(thread)
    run_inspecting(lambda cm: cm.history(thread, limit=limit), show=shown_as(render_history, as_json))


@conversation_commands.command()
def replay(
    thread: Thread,
    checkpoint: Checkpoint,
    user: User = None,
    assistant: Assistant = None,
    on_busy: OnBusy = "reject",
    busy_timeout: BusyTimeout = BUSY_TIMEOUT,
) -> None:
    """Re-run a thread from a past checkpoint (its id or a unique prefix of it), with its assistant."""
    checked_thread(thread)
    name = checked_assistant(assistant)
    _stream_turn(
        on_busy,
        busy_timeout,
        lambda cm, busy: cm.replay(thread, checkpoint, user_id=user, assistant=name, **busy),
    )


@conversation_commands.command()
def fork(
    thread: Thread,
    checkpoint: Checkpoint,
    message: Annotated[str, typer.Option("--message", "-m", help="The message the branch sends instead.")],
    user: User = None,
    assistant: Assistant = None,
    on_busy: OnBusy = "reject",
    busy_timeout: BusyTimeout = BUSY_TIMEOUT,
) -> None:
    """Branch a thread at a past checkpoint (id or unique prefix) with a different message."""
    checked_thread(thread)
    name = checked_assistant(assistant)
    _stream_turn(
        on_busy,
        busy_timeout,
        lambda cm, busy: cm.fork(thread, checkpoint, message, user_id=user, assistant=name, **busy),
    )
