"""How the CLI shows things: Rich tables and lines, kept apart from the command wiring."""

from __future__ import annotations

import json
from collections.abc import Callable, Collection
from datetime import datetime
from typing import TYPE_CHECKING, Any

from rich.markup import escape
from rich.table import Table
from rich.text import Text

from graphs.cli_tables import console, errors, render_history, render_status, render_threads
from graphs.events import PendingInterrupt, ReplyDone, ReplyToken, ToolCall, ToolResult, TurnEnded, TurnEvent

if TYPE_CHECKING:  # the heavy modules load only where a command needs them
    from checkpoint.retention import PruneReport
    from checkpoint.transcript import ForgetReport, SearchHit, TranscriptEntry, UserStats
    from graphs.memory_api import EntityMentions
    from nodes.memory import EntityRecord
    from nodes.profile import UserProfile

__all__ = [
    "console",
    "errors",
    "print_reply",
    "render_entities",
    "render_entity",
    "render_forget",
    "render_history",
    "render_interrupts",
    "render_profile",
    "render_prune",
    "render_record",
    "render_search",
    "render_stats",
    "render_status",
    "render_threads",
    "render_transcript",
    "stream_events",
    "tool_line",
]


def print_reply(text: str, prefix: str = "assistant> ") -> None:
    """A whole reply on its line, as stream_events prints one token by token."""
    console.print(prefix, end="", style="bold cyan")
    console.out(text, highlight=False)


async def stream_events(
    events: Any, *, prefix: str = "assistant> ", on_reply_done: Callable[[], object] | None = None
) -> TurnEnded:
    """Print reply tokens as they arrive; return the run's final event. At ReplyDone the reply's line
    ends and `on_reply_done` is called (the memory work goes on)."""
    started = False
    final: TurnEnded | None = None
    calls: dict[str, ToolCall] = {}
    event: TurnEvent
    async for event in events:
        if isinstance(event, ToolCall | ToolResult) and started:
            console.print()
            started = False
        if isinstance(event, ToolCall):
            calls[event.id] = event
        elif isinstance(event, ToolResult):
            console.print(tool_line(calls.pop(event.id, None), event))
        elif isinstance(event, ReplyToken):
            if not started:
                console.print(prefix, end="", style="bold cyan")
                started = True
            console.out(event.text, end="", highlight=False)
        elif isinstance(event, ReplyDone):
            if started:
                console.print()
                started = False
            if on_reply_done is not None:
                on_reply_done()
        elif isinstance(event, TurnEnded):
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


TOOL_RESULT_CHARS = 80


def tool_line(call: ToolCall | None, result: ToolResult) -> Text:
    """`⚙ name(arg="value") → first line of the result`, dim (red for an error); never read as markup."""
    args = ", ".join(
        f"{k}={json.dumps(v, ensure_ascii=False)}" for k, v in (call.args if call else {}).items()
    )
    lines = result.content.strip().splitlines()
    first = lines[0] if lines else "(nothing)"
    first = first if len(first) <= TOOL_RESULT_CHARS else first[: TOOL_RESULT_CHARS - 1] + "…"
    name = result.name or (call.name if call else "?")
    shown = f"⚙ {name}({args}) → {'error: ' if result.error else ''}{first}"
    return Text(shown, style="dim red" if result.error else "dim")


def render_interrupts(interrupts: tuple[PendingInterrupt, ...]) -> None:
    from graphs.cli_review import forget_question, render_forget_question, render_review

    for pending in interrupts:
        value = pending.value
        if isinstance(value, dict) and value.get("type") == "memory_review":
            render_review(value)
        elif forget_question((pending,)) is not None:
            render_forget_question(value)
        else:
            console.print(f"[yellow]interrupt[/] {json.dumps(value, default=str)}")


def render_prune(report: PruneReport) -> None:
    verb = "would prune" if report.dry_run else "pruned"
    console.print(
        f"{verb} {len(report.pruned)} of {report.examined} threads idle since "
        f"{report.cutoff:%Y-%m-%d %H:%M} UTC ({report.strategy}): {report.checkpoints} checkpoints, "
        f"{report.bytes / 1024:.0f} KiB; {report.run_records} run records started before then"
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


def render_entities(entities: list[EntityRecord]) -> None:
    table = Table("type", "value", "aliases", "mentions", "threads", "last seen")
    for entity in entities:
        table.add_row(
            Text(entity.type),
            Text(entity.value),
            Text(", ".join(entity.aliases)),
            str(entity.mentions),
            str(len(entity.threads)),
            entity.last_seen[:19],
        )
    console.print(table if entities else "nothing remembered yet")


def render_record(record: EntityRecord) -> None:
    """One entity's record. Stored text is shown as text, never parsed as Rich markup."""
    table = Table(escape(record.value), "", show_header=True)
    for label, value in (
        ("type", record.type),
        ("aliases", ", ".join(record.aliases) or "-"),
        ("mentions", str(record.mentions)),
        ("confidence", f"{record.confidence:.2f}"),
        ("first seen", record.first_seen[:19]),
        ("last seen", record.last_seen[:19]),
        ("threads", ", ".join(record.threads)),
        *(("context", context) for context in record.contexts),
    ):
        table.add_row(label, Text(value))
    console.print(table)


def render_entity(found: EntityMentions) -> None:
    """The record, then each message that named it (thread, time, text). Stored text is shown as text,
    never parsed as Rich markup (a message may contain `[/b]`)."""
    render_record(found.record)
    mentions = Table("thread", "time", "role", "message", title="mentions")
    for entry in found.mentions:
        mentions.add_row(entry.thread_id, _when(entry.created_at), entry.role, Text(entry.content[:200]))
    console.print(mentions if found.mentions else "no archived message mentions it (yet)")


def render_profile(profile: UserProfile | None) -> None:
    """Current facts first; a fact's earlier values are listed with the time they stopped being true."""
    if profile is None:
        console.print("no profile yet: it fills in as the user talks about themselves")
        return
    table = Table("profile", "", show_header=True)
    for label, value in profile.identity():
        table.add_row(label, Text(value or "-"))
    past = profile.past_facts()
    for attribute, value in profile.current_facts().items():
        earlier = "; ".join(
            f"{v.value} until {v.valid_to[:10] if v.valid_to else '?'}" for v in past.get(attribute, [])
        )
        table.add_row(Text(attribute), Text(value + (f" (before: {earlier})" if earlier else "")))
    table.add_row("updated", profile.updated_at[:19] if profile.updated_at else "-")
    console.print(table)


ROLE_STYLES = {"human": "bold cyan", "ai": "green", "tool": "yellow", "system": "magenta"}


def _when(moment: datetime | None) -> str:
    return f"{moment:%Y-%m-%d %H:%M:%S}" if moment else "-"


def _highlighted(snippet: str) -> Text:
    """A search snippet with its matched words in bold; the text itself is never read as markup."""
    from checkpoint.transcript import HIGHLIGHT_END, HIGHLIGHT_START

    text = Text()
    for index, part in enumerate(snippet.replace(HIGHLIGHT_END, HIGHLIGHT_START).split(HIGHLIGHT_START)):
        text.append(part.replace("\n", " "), style="bold" if index % 2 else "")
    return text


def render_search(hits: list[SearchHit]) -> None:
    table = Table("thread", "time", "role", "snippet")
    for hit in hits:
        table.add_row(
            hit.thread_id, _when(hit.created_at), Text(hit.role, style=ROLE_STYLES.get(hit.role, "")),
            _highlighted(hit.snippet),
        )  # fmt: skip
    console.print(table if hits else "no matching messages")


def _shown(entry: TranscriptEntry) -> str:
    """The message's text, or for an AI turn that only called tools, which tools it called."""
    from langchain_core.messages import AIMessage

    message = entry.message
    if entry.content or not isinstance(message, AIMessage) or not message.tool_calls:
        return entry.content
    return "calls " + ", ".join(f"{call['name']}({json.dumps(call['args'])})" for call in message.tool_calls)


def render_transcript(thread_id: str, entries: list[TranscriptEntry], working_set: Collection[str]) -> None:
    """Oldest first; messages already folded into the summary are dimmed and marked with `~`."""
    if not entries:
        console.print(f"thread {thread_id!r} has no archived messages yet")
        return
    table = Table("", "time", "role", "message", box=None, pad_edge=False)
    for entry in entries:
        folded = entry.message_id not in working_set
        table.add_row(
            "~" if folded else "",
            _when(entry.created_at),
            Text(entry.role, style=ROLE_STYLES.get(entry.role, "")),
            Text(_shown(entry), style="dim" if folded else ""),
        )
    console.print(table)
    folded_count = sum(1 for entry in entries if entry.message_id not in working_set)
    console.print(
        f"{len(entries)} messages: {folded_count} folded into the summary (~), "
        f"{len(entries) - folded_count} in the working set"
    )


def render_stats(stats: UserStats) -> None:
    table = Table("user", stats.user_id, show_header=True)
    table.add_row("conversations", str(stats.conversations))
    table.add_row("messages", str(stats.messages))
    table.add_row("messages per conversation", f"{stats.messages_per_conversation:.1f}")
    table.add_row("first interaction", _when(stats.first_interaction))
    table.add_row("last interaction", _when(stats.last_interaction))
    table.add_row("tokens (approx.)", str(stats.tokens))
    table.add_row("entities remembered", str(stats.entities))
    console.print(table)


def render_forget(report: ForgetReport) -> None:
    console.print(
        f"forgot user {report.user_id!r}: {report.transcript_messages} transcript messages, "
        f"{report.memories} memory records, {len(report.threads)} threads"
        + (f" ({', '.join(report.threads)})" if report.threads else "")
    )
