"""The memory commands: what is remembered about a user, every message ever exchanged, and forgetting."""

from __future__ import annotations

from collections.abc import Awaitable
from typing import TYPE_CHECKING, Annotated

import typer

from graphs.cli import (
    AsJson,
    Thread,
    User,
    checked_thread,
    memory_commands,
    reported_errors,
    run_inspecting,
    run_with_memory,
    shown_as,
)
from nodes.errors import InvalidInput

if TYPE_CHECKING:
    from checkpoint.transcript import TranscriptEntry
    from graphs.api import Convomem
    from graphs.memory_api import MemoryApi
    from nodes.memory import EntityRecord
    from nodes.profile import UserProfile

__all__ = [
    "edit_entity",
    "entities",
    "entity",
    "fact",
    "forget",
    "profile",
    "remember",
    "search",
    "stats",
    "transcript",
]

EntityName = Annotated[str, typer.Argument(help="Its name or an alias (close spellings are found too).")]


@memory_commands.command()
def entities(
    user: User = None,
    entity_type: Annotated[
        str | None,
        typer.Option("--type", "-t", help="Only this type: PERSON, ORG, LOC, TECH..."),
    ] = None,
    as_json: AsJson = False,
) -> None:
    """What the assistant remembers about a user, most mentioned first."""
    from graphs.cli_render import render_entities

    run_with_memory(
        lambda cm: cm.entities(user, entity_type=entity_type), show=shown_as(render_entities, as_json)
    )


@memory_commands.command()
def entity(
    name: EntityName,
    user: User = None,
    as_json: AsJson = False,
) -> None:
    """One entity: its record and every message that mentioned it, across threads."""
    from graphs.cli_render import render_entity

    run_with_memory(lambda cm: cm.entity(name, user), show=shown_as(render_entity, as_json))


@memory_commands.command()
def profile(user: User = None, as_json: AsJson = False) -> None:
    """The user's profile: name, language, style, interests, and facts with their history."""
    from graphs.cli_render import render_profile

    run_with_memory(lambda cm: cm.profile(user), show=shown_as(render_profile, as_json))


@memory_commands.command()
def remember(
    entity_type: Annotated[
        str, typer.Argument(metavar="TYPE", help="PERSON, ORG, LOC, DATE, PRODUCT, TECH, EVENT or OTHER.")
    ],
    value: Annotated[str, typer.Argument(help="Its name as it is written, e.g. 'Acme Corp'.")],
    context: Annotated[
        str, typer.Option("--context", "-c", help="A short note on it (at most 240 characters).")
    ] = "",
    user: User = None,
    as_json: AsJson = False,
) -> None:
    """Remember an entity by hand; one already remembered under that name counts one more mention."""
    from graphs.cli_render import render_record

    run_with_memory(
        lambda cm: cm.add_entity(entity_type, value, context=context, user_id=user),
        show=shown_as(render_record, as_json),
    )


@memory_commands.command("edit-entity")
def edit_entity(
    name: EntityName,
    entity_type: Annotated[
        str | None, typer.Option("--type", "-t", help="New type: PERSON, ORG, LOC, TECH...")
    ] = None,
    value: Annotated[
        str | None, typer.Option("--value", "-v", help="New name; the old one stays as an alias.")
    ] = None,
    contexts: Annotated[
        list[str] | None,
        typer.Option("--context", "-c", help="Replaces the notes; repeat for several, '' clears them."),
    ] = None,
    user: User = None,
    as_json: AsJson = False,
) -> None:
    """Change a remembered entity's type, name or notes; its mentions and threads stay."""
    from graphs.cli_render import render_record

    with reported_errors():  # before the database starts
        if entity_type is None and value is None and contexts is None:
            raise InvalidInput("Say what to change: --type, --value or --context.")

    def change(cm: MemoryApi) -> Awaitable[EntityRecord]:
        return cm.edit_entity(name, entity_type=entity_type, value=value, contexts=contexts, user_id=user)

    run_with_memory(change, show=shown_as(render_record, as_json))


@memory_commands.command()
def fact(
    attribute: Annotated[str, typer.Argument(help="What the fact is about, e.g. lives_in or 'works at'.")],
    value: Annotated[
        str | None, typer.Argument(help="Its value now; the previous one goes to history.")
    ] = None,
    unset: Annotated[
        bool, typer.Option("--unset", help="End the fact: it no longer holds (its history stays).")
    ] = False,
    user: User = None,
    as_json: AsJson = False,
) -> None:
    """Set a profile fact by hand, or with --unset end it; earlier values stay in its history."""
    from graphs.cli_render import render_profile

    with reported_errors():  # before the database starts
        if unset == (value is not None):
            raise InvalidInput("Give either a VALUE to set or --unset, not both or neither.")

    def change(cm: MemoryApi) -> Awaitable[UserProfile]:
        if value is None:
            return cm.unset_fact(attribute, user_id=user)
        return cm.set_fact(attribute, value, user_id=user)

    run_with_memory(change, show=shown_as(render_profile, as_json))


@memory_commands.command()
def search(
    query: Annotated[str, typer.Argument(help='Words to find; "a phrase", or, -word work as on the web.')],
    user: Annotated[str | None, typer.Option("--user", "-u", help="Only this user's messages.")] = None,
    thread: Annotated[str | None, typer.Option("--thread", "-t", help="Only this thread.")] = None,
    limit: Annotated[int, typer.Option(min=1, help="At most this many (up to 1000).")] = 20,
    as_json: AsJson = False,
) -> None:
    """Search every message ever exchanged, summarized ones too; best matches first."""
    from checkpoint.transcript import MAX_SEARCH_RESULTS
    from graphs.cli_render import render_search

    with reported_errors():  # before the database starts
        if limit > MAX_SEARCH_RESULTS:
            raise InvalidInput(f"--limit is at most {MAX_SEARCH_RESULTS}, not {limit}.")
    run_with_memory(
        lambda cm: cm.search(query, user_id=user, thread_id=thread, limit=limit),
        show=shown_as(render_search, as_json),
    )


async def _transcript_and_working_set(cm: Convomem, thread: str) -> tuple[list[TranscriptEntry], set[str]]:
    """The whole transcript, and the ids of the messages the thread still holds (not yet summarized)."""
    entries = await cm.transcript(thread)
    working_set = {m.id for m in (await cm.state(thread)).values.get("messages") or [] if m.id}
    return entries, working_set


@memory_commands.command()
def transcript(thread: Thread, as_json: AsJson = False) -> None:
    """A thread's whole conversation, including the messages folded into its summary."""
    from graphs.cli_render import render_transcript

    checked_thread(thread)

    def print_document(found: tuple[list[TranscriptEntry], set[str]]) -> None:
        from graphs.cli_json import jsonable, print_json

        entries, working_set = found
        messages = [{**jsonable(entry), "folded": entry.message_id not in working_set} for entry in entries]
        print_json({"thread_id": thread, "messages": messages})

    run_inspecting(
        lambda cm: _transcript_and_working_set(cm, thread),
        show=print_document if as_json else lambda found: render_transcript(thread, *found),
    )


@memory_commands.command()
def stats(user: User = None, as_json: AsJson = False) -> None:
    """A user's conversations, messages, tokens and remembered entities."""
    from graphs.cli_render import render_stats

    run_with_memory(lambda cm: cm.stats(user), show=shown_as(render_stats, as_json))


def _user_to_forget(user: str | None) -> str:
    from checkpoint.ids import validate_user_id

    if user is None:
        raise InvalidInput("Say whom to forget: `convomem forget --user USER [--entity NAME]`.")
    return validate_user_id(user)


def _confirm(question: str) -> bool:
    """typer.confirm, with end of input (nobody to answer) taken as no."""
    from graphs.cli_render import console

    try:
        return typer.confirm(question, default=False)
    except typer.Abort:
        console.print()
        return False


async def _forget(cm: MemoryApi, user: str, entity: str | None, yes: bool) -> None:
    """One entity at once; a whole user after a yes (exit 1 when the answer is no)."""
    from rich.text import Text

    from graphs.cli_render import console, render_forget

    if entity is not None:
        forgotten = await cm.forget_entity(entity, user)
        console.print(Text(f"forgot {forgotten.type} {forgotten.value!r} of user {user!r}"))
        return
    if not yes:
        found = await cm.stats(user)
        question = (
            f"Forget user {user!r} for good: {found.conversations} conversations, "
            f"{found.messages} messages, {found.entities} entities?"
        )
        if not _confirm(question):
            console.print("nothing deleted (--yes skips the question)")
            raise typer.Exit(1)
    render_forget(await cm.forget(user))


@memory_commands.command()
def forget(
    user: Annotated[str | None, typer.Option("--user", "-u", help="The user to forget entirely.")] = None,
    entity: Annotated[
        str | None, typer.Option("--entity", "-e", help="Forget only this entity of the user.")
    ] = None,
    yes: Annotated[bool, typer.Option("--yes", "-y", help="Do not ask for confirmation.")] = False,
) -> None:
    """Delete everything kept about a user (transcript, memories, threads), or with --entity one entity."""
    with reported_errors():
        whom = _user_to_forget(user)
    run_with_memory(lambda cm: _forget(cm, whom, entity, yes))
