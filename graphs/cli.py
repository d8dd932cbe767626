"""The `convomem` command line (Typer + Rich): chat, inspect, replay, fork, resume, memory and database."""

from __future__ import annotations

import asyncio
import json
import sys
from collections.abc import Callable, Coroutine
from typing import Annotated, Any, cast, get_args

import typer
from pydantic import ValidationError
from rich.text import Text

from checkpoint.compaction import compact_thread
from checkpoint.embedded import embedded_status, stop_embedded
from checkpoint.ids import validate_id, validate_user_id
from checkpoint.locks import BUSY_TIMEOUT, check_on_busy
from checkpoint.persistence import describe_url
from checkpoint.retention import Strategy, parse_duration, prune_threads
from checkpoint.status import database_status
from checkpoint.threads import all_thread_ids
from checkpoint.transcript import MAX_SEARCH_RESULTS
from graphs.api import Convomem, PendingInterrupt, open_convomem, unfinished
from graphs.cli_render import (
    console,
    errors,
    render_entities,
    render_entity,
    render_forget,
    render_history,
    render_interrupts,
    render_profile,
    render_prune,
    render_search,
    render_stats,
    render_status,
    render_threads,
    render_transcript,
    stream_events,
)
from graphs.conversation import NODES
from graphs.database import database_url, open_database
from graphs.settings import Durability, Settings
from nodes.errors import ConfigError, ConvomemError, InvalidInput

__all__ = ["app"]

app = typer.Typer(
    help="convomem: a conversational agent whose memory survives everything.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    add_completion=False,
)
db_app = typer.Typer(help="The database: setup, status, stop.", no_args_is_help=True)
app.add_typer(db_app, name="db")

Thread = Annotated[str, typer.Option("--thread", "-t", help="Conversation thread id.")]
User = Annotated[str | None, typer.Option("--user", "-u", help="User id (default: CONVOMEM_USER_ID).")]
Checkpoint = Annotated[str, typer.Option("--checkpoint", "-c", help="Checkpoint id (see `history`).")]
OnBusyOption = Annotated[
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


def _settings() -> Settings:
    try:
        return Settings()
    except ValidationError as error:
        first = error.errors()[0]
        raise ConfigError(f"Invalid setting {'.'.join(map(str, first['loc']))}: {first['msg']}.") from error


def _run(work: Callable[[Settings], Coroutine[Any, Any, int | None]]) -> None:
    """Run one async command; ConvomemError becomes one red line and exit code 1, never a traceback."""
    try:
        code = asyncio.run(work(_settings()))
    except ConvomemError as error:
        errors.print(f"[red]error:[/] {error}")
        raise typer.Exit(1) from None
    except KeyboardInterrupt:
        errors.print("interrupted: the thread keeps its progress; continue it with `convomem resume`.")
        raise typer.Exit(130) from None
    if code:
        raise typer.Exit(code)


def _read_stdin() -> str:
    try:
        return sys.stdin.buffer.read().decode("utf-8")
    except UnicodeDecodeError as error:
        raise InvalidInput(f"Standard input is not valid UTF-8 (byte {error.start}): re-encode it.") from None


def _check_nodes(names: list[str]) -> list[str]:
    unknown = [n for n in names if n not in NODES]
    if unknown:
        raise InvalidInput(f"Unknown node {unknown[0]!r}: choose from {', '.join(NODES)}.")
    return names


def _busy(on_busy: str, busy_timeout: float) -> dict[str, Any]:
    return {"on_busy": check_on_busy(on_busy), "busy_timeout": busy_timeout}


def _check_durability(value: str | None) -> Durability | None:
    if value is None or value in get_args(Durability):
        return cast(Durability | None, value)
    raise InvalidInput(f"Unknown durability {value!r}: choose sync, async or exit.")


def _parse_value(raw: str | None) -> Any:
    """--value as JSON, or a bare word such as approve / reject."""
    if raw is None:
        return None
    try:
        return json.loads(raw)
    except json.JSONDecodeError:
        if raw.strip().isidentifier():
            return raw.strip()
        raise InvalidInput(f"--value is neither JSON nor a single word: {raw[:40]!r}.") from None


def _ask_review(pending: tuple[PendingInterrupt, ...]) -> Any:
    """Interactive answer to a memory review: approve, reject, or keep only some numbers."""
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
    final = await stream_events(cm.chat(thread, text, user_id=user, **options))
    while final.interrupts and sys.stdin.isatty():
        answer = _ask_review(final.interrupts)
        final = await stream_events(cm.resume(thread, answer, user_id=user))


async def _finish_pending(cm: Convomem, thread: str, user: str | None) -> None:
    """A thread that waits (review, breakpoint, killed run) is shown first and answered or resumed."""
    snapshot = await cm.state(thread)
    pending = await cm.pending_interrupts(thread)
    if pending:
        render_interrupts(pending)
        if sys.stdin.isatty():
            await stream_events(cm.resume(thread, _ask_review(pending), user_id=user))
    elif unfinished(snapshot):
        console.print(f"[yellow]this thread has an unfinished turn (next: {', '.join(snapshot.next)})[/]")
        if sys.stdin.isatty() and typer.confirm("finish it now?", default=True):
            await stream_events(cm.resume(thread, user_id=user))


@app.command()
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
    on_busy: OnBusyOption = "reject",
    busy_timeout: BusyTimeout = BUSY_TIMEOUT,
) -> None:
    """Chat on a thread; the reply streams. Without --message, an interactive session (Ctrl-D quits)."""

    async def work(settings: Settings) -> None:
        options: dict[str, Any] = {
            "review_memory": review,
            "interrupt_before": _check_nodes(interrupt_before or []),
            "interrupt_after": _check_nodes(interrupt_after or []),
            "durability": _check_durability(durability),
            **_busy(on_busy, busy_timeout),
        }
        one_shot = _read_stdin() if message == "-" else message
        async with open_convomem(settings) as cm:
            if one_shot is not None:
                cm.check_message(one_shot)
                await _converse(cm, thread, user, one_shot, options)
                return
            console.print(f"[bold]convomem[/] — thread [cyan]{thread}[/]; Ctrl-D or /quit to leave.")
            await _finish_pending(cm, thread, user)
            while True:
                try:
                    text = input("you> ")
                except EOFError:
                    return
                except UnicodeDecodeError:
                    errors.print("[red]error:[/] that line is not valid UTF-8; type it again.")
                    continue
                if text.strip() == "/quit":
                    return
                if not text.strip():
                    continue
                try:
                    await _converse(cm, thread, user, text, options)
                except InvalidInput as error:
                    errors.print(f"[red]error:[/] {error}")

    _run(work)


@app.command()
def resume(
    thread: Thread,
    user: User = None,
    value: Annotated[
        str | None, typer.Option("--value", help="Answer to the interrupt: approve, reject or JSON.")
    ] = None,
    on_busy: OnBusyOption = "reject",
    busy_timeout: BusyTimeout = BUSY_TIMEOUT,
) -> None:
    """Answer a pending interrupt, continue past a breakpoint, or finish a run a crash cut short."""

    async def work(settings: Settings) -> None:
        parsed = _parse_value(value)
        busy = _busy(on_busy, busy_timeout)
        async with open_convomem(settings) as cm:
            await stream_events(cm.resume(thread, parsed, user_id=user, **busy))

    _run(work)


@app.command()
def threads(limit: Annotated[int, typer.Option(min=1)] = 50) -> None:
    """List threads, most recently active first."""

    async def work(settings: Settings) -> None:
        async with open_convomem(settings) as cm:
            render_threads(await cm.threads(limit=limit))

    _run(work)


@app.command()
def history(thread: Thread, limit: Annotated[int, typer.Option(min=1)] = 30) -> None:
    """A thread's checkpoints, newest first: node, time, step."""

    async def work(settings: Settings) -> None:
        async with open_convomem(settings) as cm:
            render_history(await cm.history(thread, limit=limit))

    _run(work)


@app.command()
def replay(
    thread: Thread,
    checkpoint: Checkpoint,
    user: User = None,
    on_busy: OnBusyOption = "reject",
    busy_timeout: BusyTimeout = BUSY_TIMEOUT,
) -> None:
    """Re-run a thread from a past checkpoint."""

    async def work(settings: Settings) -> None:
        busy = _busy(on_busy, busy_timeout)
        async with open_convomem(settings) as cm:
            await stream_events(cm.replay(thread, checkpoint, user_id=user, **busy))

    _run(work)


@app.command()
def fork(
    thread: Thread,
    checkpoint: Checkpoint,
    message: Annotated[str, typer.Option("--message", "-m", help="The message the branch sends instead.")],
    user: User = None,
    on_busy: OnBusyOption = "reject",
    busy_timeout: BusyTimeout = BUSY_TIMEOUT,
) -> None:
    """Branch a thread at a past checkpoint with a different message."""

    async def work(settings: Settings) -> None:
        busy = _busy(on_busy, busy_timeout)
        async with open_convomem(settings) as cm:
            await stream_events(cm.fork(thread, checkpoint, message, user_id=user, **busy))

    _run(work)


@app.command()
def entities(
    user: User = None,
    entity_type: Annotated[
        str | None,
        typer.Option("--type", "-t", help="Only this type: PERSON, ORG, LOC, TECH..."),
    ] = None,
) -> None:
    """What the assistant remembers about a user, most mentioned first."""

    async def work(settings: Settings) -> None:
        async with open_convomem(settings) as cm:
            render_entities(await cm.entities(user, entity_type=entity_type))

    _run(work)


@app.command()
def entity(
    name: Annotated[str, typer.Argument(help="Its name or an alias (close spellings are found too).")],
    user: User = None,
) -> None:
    """One entity: its record and every message that mentioned it, across threads."""

    async def work(settings: Settings) -> None:
        async with open_convomem(settings) as cm:
            render_entity(await cm.entity(name, user))

    _run(work)


@app.command()
def profile(user: User = None) -> None:
    """The user's profile: name, language, style, interests, and facts with their history."""

    async def work(settings: Settings) -> None:
        async with open_convomem(settings) as cm:
            render_profile(await cm.profile(user))

    _run(work)


@app.command()
def search(
    query: Annotated[str, typer.Argument(help='Words to find; "a phrase", or, -word work as on the web.')],
    user: Annotated[str | None, typer.Option("--user", "-u", help="Only this user's messages.")] = None,
    thread: Annotated[str | None, typer.Option("--thread", "-t", help="Only this thread.")] = None,
    limit: Annotated[int, typer.Option(min=1, max=MAX_SEARCH_RESULTS)] = 20,
) -> None:
    """Search every message ever exchanged, summarized ones too; best matches first."""

    async def work(settings: Settings) -> None:
        async with open_convomem(settings) as cm:
            render_search(await cm.search(query, user_id=user, thread_id=thread, limit=limit))

    _run(work)


@app.command()
def transcript(thread: Thread) -> None:
    """A thread's whole conversation, including the messages folded into its summary."""

    async def work(settings: Settings) -> None:
        async with open_convomem(settings) as cm:
            entries = await cm.transcript(thread)
            working_set = {m.id for m in (await cm.state(thread)).values.get("messages") or [] if m.id}
        render_transcript(thread, entries, working_set)

    _run(work)


@app.command()
def stats(user: User = None) -> None:
    """A user's conversations, messages, tokens and remembered entities."""

    async def work(settings: Settings) -> None:
        async with open_convomem(settings) as cm:
            render_stats(await cm.stats(user))

    _run(work)


@app.command()
def forget(
    user: Annotated[str | None, typer.Option("--user", "-u", help="The user to forget entirely.")] = None,
    entity: Annotated[
        str | None, typer.Option("--entity", "-e", help="Forget only this entity of the user.")
    ] = None,
    yes: Annotated[bool, typer.Option("--yes", "-y", help="Do not ask for confirmation.")] = False,
) -> None:
    """Delete everything kept about a user (transcript, memories, threads), or with --entity one entity."""

    async def work(settings: Settings) -> int:
        if user is None:
            raise InvalidInput("Say whom to forget: `convomem forget --user USER [--entity NAME]`.")
        validate_user_id(user)
        async with open_convomem(settings) as cm:
            if entity is not None:
                forgotten = await cm.forget_entity(entity, user)
                console.print(Text(f"forgot {forgotten.type} {forgotten.value!r} of user {user!r}"))
                return 0
            if not yes:
                found = await cm.stats(user)
                question = (
                    f"Forget user {user!r} for good: {found.conversations} conversations, "
                    f"{found.messages} messages, {found.entities} entities?"
                )
                if not _confirm(question):
                    console.print("nothing deleted (--yes skips the question)")
                    return 1
            render_forget(await cm.forget(user))
        return 0

    _run(work)


def _confirm(question: str) -> bool:
    """typer.confirm, with end of input (nobody to answer) taken as no."""
    try:
        return typer.confirm(question, default=False)
    except typer.Abort:
        console.print()
        return False


@db_app.command("setup")
def db_setup() -> None:
    """Create or migrate every table (idempotent)."""

    async def work(settings: Settings) -> None:
        async with open_database(settings, setup=True):
            console.print(f"tables ready at {describe_url(await database_url(settings))}")

    _run(work)


@db_app.command("status")
def db_status() -> None:
    """Server, applied migrations and table sizes."""

    async def work(settings: Settings) -> int:
        if settings.database_url is None:
            embedded = embedded_status(settings.data_dir)
            if not embedded.running:
                console.print(f"embedded Postgres in {embedded.data_dir}: stopped")
                return 0
        async with open_database(settings, setup=False) as persistence:
            where = describe_url(await database_url(settings))
            render_status(where, await database_status(persistence.pool))
        return 0

    _run(work)


@db_app.command("prune")
def db_prune(
    older_than: Annotated[
        str, typer.Option("--older-than", help="Age of a thread's newest checkpoint: 30d, 12h, 90m, 2w.")
    ],
    strategy: Annotated[
        str, typer.Option(help="keep_latest (keep each thread's latest state) or delete (whole thread).")
    ] = "keep_latest",
    dry_run: Annotated[bool, typer.Option("--dry-run", help="Show what would go; change nothing.")] = False,
) -> None:
    """Prune checkpoints of idle threads (never one waiting on an interrupt or running)."""

    async def work(settings: Settings) -> None:
        if strategy not in get_args(Strategy):
            raise InvalidInput(f"Unknown strategy {strategy!r}: choose keep_latest or delete.")
        age = parse_duration(older_than)
        async with open_database(settings, setup=False) as persistence:
            report = await prune_threads(
                persistence.pool,
                persistence.checkpointer,
                older_than=age,
                strategy=cast(Strategy, strategy),
                dry_run=dry_run,
            )
        render_prune(report)

    _run(work)


@db_app.command("compact")
def db_compact(
    keep_turns: Annotated[
        int | None, typer.Option("--keep-turns", min=0, help="Turns that keep every step (default: setting).")
    ] = None,
    thread: Annotated[str | None, typer.Option("--thread", help="Only this thread.")] = None,
) -> None:
    """Drop step checkpoints of older turns, keeping each turn's last (threads LangGraph Server ran too)."""

    async def work(settings: Settings) -> None:
        keep = settings.step_history_turns if keep_turns is None else keep_turns
        async with open_database(settings, setup=False) as persistence:
            threads = [validate_id(thread)] if thread else await all_thread_ids(persistence.pool)
            for thread_id in threads:
                report = await compact_thread(persistence.pool, thread_id, keep_recent_runs=keep)
                if report.skipped or report.checkpoints_deleted:
                    console.print(f"{thread_id}: {report}")
            console.print(f"{len(threads)} threads compacted (each keeps its last {keep} turns whole)")

    _run(work)


@db_app.command("stop")
def db_stop() -> None:
    """Stop the embedded Postgres server (DATABASE_URL servers are not ours to stop)."""

    async def work(settings: Settings) -> None:
        if settings.database_url:
            console.print("DATABASE_URL is set: that server is not managed by convomem.")
            return
        stopped = stop_embedded(settings.data_dir)
        console.print("embedded Postgres stopped" if stopped else "embedded Postgres was not running")

    _run(work)


@app.command()
def demo() -> None:
    """A scripted tour: memory across threads, a memory review, a killed process resumed, a replay."""
    from graphs.demo import run_demo

    _run(run_demo)


if __name__ == "__main__":
    app()
