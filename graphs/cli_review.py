"""A memory review at the command line: the numbered proposal, the prompt that answers it, what was stored."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import TYPE_CHECKING, Any

import typer
from rich.table import Table
from rich.text import Text

from graphs.cli import print_error
from graphs.events import PendingInterrupt, TurnEnded, TurnEvent
from nodes.errors import InvalidInput
from nodes.memory_tools import FORGET_ANSWERS, FORGET_CONFIRMATION, forget_decision
from nodes.review import REVIEW_ANSWERS, ReviewItem, decide_review, read_review_answer, review_items

if TYPE_CHECKING:
    from graphs.api import Convomem

__all__ = [
    "answer_reviews",
    "ask_forget_answer",
    "ask_review_answer",
    "confirm_stored",
    "forget_question",
    "memory_review",
    "pending_report",
    "render_forget_question",
    "render_pending",
    "render_review",
    "thread_pending",
]

AskLine = Callable[[str], Awaitable[str | None]]
"""Reads one line after showing a prompt; None when the input ended (Ctrl-D)."""

PROMPT = "remember these? [a]pprove / [r]eject / numbers to keep (e.g. 1,3) / an edited JSON list: "
_SHORT = {"a": "approve", "r": "reject"}


def memory_review(pending: tuple[PendingInterrupt, ...]) -> dict[str, Any] | None:
    """The memory review's proposal among a thread's pending interrupts."""
    for interrupt in pending:
        if isinstance(interrupt.value, dict) and interrupt.value.get("type") == "memory_review":
            return interrupt.value
    return None


def _shown(item: ReviewItem) -> tuple[str, str, str]:
    """(type, value, context) of one numbered line."""
    value = item.value
    if item.kind == "entity":
        return str(value.get("type", "")), str(value.get("value", "")), str(value.get("context", ""))
    if isinstance(value, dict):  # a fact statement
        return f"profile {item.label}", str(value.get("value", "")), ""
    return f"profile {item.label}", str(value), ""


def render_review(review: dict[str, Any]) -> None:
    """Every entity and profile fact with the number that keeps it."""
    from graphs.cli_render import console

    table = Table(title="Memory review: the assistant proposes to remember", title_justify="left")
    for column in ("#", "type", "value", "context"):
        table.add_column(column)
    for number, item in enumerate(review_items(review), 1):
        table.add_row(str(number), *(Text(cell) for cell in _shown(item)))
    console.print(table)


def pending_report(
    thread_id: str, review: dict[str, Any] | None, next_nodes: tuple[str, ...]
) -> dict[str, Any]:
    """What `pending --json` prints: the numbered review items, the forget question, or the unfinished
    turn's next nodes."""
    if review is not None and review.get("type") == FORGET_CONFIRMATION:
        return {"thread_id": thread_id, "review": None, "forget": review, "next": list(next_nodes)}
    items = [
        {"number": number, "kind": item.kind, "type": kind, "value": value, "context": context}
        for number, item in enumerate(review_items(review or {}), 1)
        for kind, value, context in [_shown(item)]
    ]
    return {
        "thread_id": thread_id,
        "review": None if review is None else {"items": items},
        "next": list(next_nodes),
    }


def render_pending(thread_id: str, review: dict[str, Any] | None, next_nodes: tuple[str, ...]) -> None:
    from graphs.cli_render import console

    if review is not None and review.get("type") == FORGET_CONFIRMATION:
        render_forget_question(review)
        console.print(f"answer with `convomem resume --thread {thread_id} --value ANSWER`: {FORGET_ANSWERS}")
    elif review is not None:
        render_review(review)
        console.print(f"answer with `convomem resume --thread {thread_id} --value ANSWER`: {REVIEW_ANSWERS}")
    elif next_nodes:
        console.print(
            f"thread {thread_id} has an unfinished turn (next: {', '.join(next_nodes)}): "
            f"`convomem resume --thread {thread_id}` finishes it"
        )
    else:
        console.print(f"thread {thread_id} has nothing pending")


async def ask_review_answer(review: dict[str, Any], ask: AskLine) -> Any:
    """Ask until the answer is one decide_review takes; Enter alone asks again. None when input ends."""
    while True:
        line = await ask(PROMPT)
        if line is None:
            return None
        text = line.strip()
        if not text:
            continue
        try:
            answer = read_review_answer(_SHORT.get(text.lower(), text))
            decide_review(answer, review)
        except InvalidInput as error:
            print_error(error)
            continue
        except ValueError as error:
            print_error(f"{str(error).splitlines()[0]}: give {REVIEW_ANSWERS}.")
            continue
        return answer


async def confirm_stored(cm: Convomem, thread_id: str, review: dict[str, Any], answer: Any) -> None:
    """Say what the store now holds of what the answer kept (read back, not assumed)."""
    from graphs.cli_render import console

    kept = decide_review(answer, review)
    user = (await cm.state(thread_id)).values.get("user_id")
    names = {str(e["value"]).casefold() for e in kept.entities}
    records = [
        r for r in await cm.entities(user) if {r.value.casefold(), *map(str.casefold, r.aliases)} & names
    ]
    stored = ", ".join(f"{r.value} ({r.type})" for r in records) or "no entities"
    console.print("remembered: " + stored, markup=False)
    if kept.profile:
        profile = await cm.profile(user)
        facts = profile.current_facts() if profile is not None else {}
        identity = dict(profile.identity()) if profile is not None else {}
        shown = {**{k: v for k, v in identity.items() if v}, **facts}
        console.print("profile now: " + json.dumps(shown, ensure_ascii=False), markup=False)


async def thread_pending(cm: Convomem, thread_id: str) -> tuple[dict[str, Any] | None, tuple[str, ...]]:
    """The thread's memory review (or forget question) waiting for an answer, else the nodes its
    unfinished turn has left."""
    from graphs.api import unfinished

    snapshot = await cm.state(thread_id)
    pending = tuple(PendingInterrupt(i.id, i.value) for i in snapshot.interrupts)
    review = memory_review(pending) or forget_question(pending)
    return review, tuple(snapshot.next) if review is None and unfinished(snapshot) else ()


async def answer_reviews(
    cm: Convomem,
    thread_id: str,
    user: str | None,
    pending: tuple[PendingInterrupt, ...],
    ask: AskLine,
    run: Callable[[AsyncIterator[TurnEvent]], Awaitable[TurnEnded | None]],
) -> None:
    """At a terminal: ask, resume with the answer (through `run`), confirm what was stored; again while
    the run asks. Input that ends leaves the review pending."""
    from graphs.cli_render import console

    stays = f"the question stays pending: `convomem resume --thread {thread_id}` answers it"
    while (review := memory_review(pending)) is not None or forget_question(pending) is not None:
        try:
            answer = await (ask_review_answer(review, ask) if review is not None else ask_forget_answer(ask))
        except asyncio.CancelledError:  # Ctrl-C at a one-shot command's prompt (asyncio.run cancels)
            console.print(f"\ninterrupted: {stays}")
            raise typer.Exit(130) from None
        if answer is None:
            console.print(stays)
            return
        final = await run(cm.resume(thread_id, answer, user_id=user))
        if final is None:
            return
        if review is not None and not final.interrupts:
            await confirm_stored(cm, thread_id, review, answer)
        pending = final.interrupts


def forget_question(pending: tuple[PendingInterrupt, ...]) -> dict[str, Any] | None:
    """The forget tool's confirmation among a thread's pending interrupts."""
    for interrupt in pending:
        if isinstance(interrupt.value, dict) and interrupt.value.get("type") == FORGET_CONFIRMATION:
            return interrupt.value
    return None


def render_forget_question(question: dict[str, Any]) -> None:
    from graphs.cli_render import console

    console.print(Text(str(question.get("question", "")), style="yellow"))
    for item in question.get("items") or []:
        console.print(Text(f"  - {item}"))


async def ask_forget_answer(ask: AskLine) -> bool | None:
    """Ask until the answer is yes or no; None when input ends."""
    while True:
        line = await ask("forget? [y/n] ")
        if line is None:
            return None
        try:
            return forget_decision(line)
        except ValueError:
            if line.strip():
                print_error(f"answer {FORGET_ANSWERS}.")
