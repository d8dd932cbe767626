"""`convomem demo`: a scripted tour that shows memory, a review interrupt, a crash resumed, and a replay."""

from __future__ import annotations

import asyncio
import codecs
import os
import signal
import sys
import time
from collections.abc import AsyncIterator

from rich.rule import Rule

from graphs.api import Convomem, ReplyToken, TurnEnded, TurnEvent, open_convomem
from graphs.cli_render import console, render_entities, render_history, render_profile, stream_events
from graphs.settings import Settings
from nodes.recall import PASSAGES_HEADER

__all__ = ["run_demo"]

CHILD = "│ "
"""Marks the lines a child process prints, relayed as they come."""
TOKENS_BEFORE_KILL = 24
"""Bytes of streamed reply the killed child prints first, so the kill is visibly mid-reply."""
FLIGHT = "My flight to Porto leaves at half past six on Tuesday."
QUESTION = "When does my flight leave?"
ASSISTANT = "recall"
FLIGHT_TIME = ("six", "6:30", "18:30", "6.30")
QUIET_NOTE = 30.0
"""Seconds without an event before the tour says what is still running (the local model's memory calls
take minutes, with nothing to stream)."""


STEPS = 5


def _step(number: int, title: str) -> None:
    console.print()
    console.print(Rule(f"[bold]{number}/{STEPS}  {title}[/]", align="left"))


def _user_says(text: str) -> None:
    console.print(f"[bold green]you>[/] {text}")


async def _cli(*args: str) -> asyncio.subprocess.Process:
    """The convomem CLI in a child process, unbuffered, so the demo can watch and kill it."""
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    return await asyncio.create_subprocess_exec(
        sys.executable, "-m", "graphs.cli", *args,
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.STDOUT, env=env,
    )  # fmt: skip


async def _relay(child: asyncio.subprocess.Process, *, stop_after: bytes = b"") -> bytes:
    """Copy the child's output to ours as it arrives (chunks, not lines: reply tokens stream within a
    line). Given a `stop_after` marker, return once it and a few reply tokens have shown; else at the end."""
    assert child.stdout is not None
    decoder = codecs.getincrementaldecoder("utf-8")(errors="replace")
    seen = b""
    at_line_start = True
    started = time.monotonic()
    while True:
        try:  # a cancelled read loses nothing: the bytes stay buffered for the next one
            chunk = await asyncio.wait_for(child.stdout.read(256), QUIET_NOTE)
        except TimeoutError:
            if not at_line_start:
                console.out("")
                at_line_start = True
            _still_working("the child process is", started)
            continue
        if not chunk:
            break
        seen += chunk
        text = decoder.decode(chunk)
        if text:
            shown = (CHILD if at_line_start else "") + text.replace("\n", "\n" + CHILD)
            at_line_start = shown.endswith("\n" + CHILD)
            console.out(shown.removesuffix(CHILD) if at_line_start else shown, end="", highlight=False)
        if stop_after and stop_after in seen and len(seen.split(stop_after, 1)[1]) >= TOKENS_BEFORE_KILL:
            break
    if not at_line_start:
        console.out("")
    return seen


def _still_working(doing: str, started: float) -> None:
    console.print(f"[dim]  ... {doing} still working ({time.monotonic() - started:.0f} s)[/]")


async def _narrated(events: AsyncIterator[TurnEvent]) -> AsyncIterator[TurnEvent]:
    """The run's events as they come, and a line every QUIET_NOTE s of silence saying what still runs."""
    started = time.monotonic()
    doing = "the model is"
    iterator = aiter(events)
    pending: asyncio.Future[TurnEvent] | None = None
    try:
        while True:
            pending = asyncio.ensure_future(anext(iterator))
            while not (await asyncio.wait({pending}, timeout=QUIET_NOTE))[0]:
                if doing == "replying":
                    console.print()  # ends the reply's line: the tokens stopped, memory work goes on
                    doing = "the reply is done; memory work (extract_entities, summarize) is"
                _still_working(doing, started)
            try:
                event = pending.result()
            except StopAsyncIteration:
                return
            if isinstance(event, ReplyToken) and doing == "the model is":
                doing = "replying"
            yield event
    finally:
        if pending is not None and not pending.done():
            pending.cancel()


async def _turn(events: AsyncIterator[TurnEvent]) -> TurnEnded:
    return await stream_events(_narrated(events))


def _mentions(text: str | None, *facts: str) -> list[str]:
    return [fact for fact in facts if fact.lower() in (text or "").lower()]


async def _memory_across_threads(cm: Convomem, user: str, tag: str) -> str:
    _step(1, "A fact remembered across threads")
    first = f"{tag}-intro"
    text = "Hi! My name is Ada Lovelace. I live in Lisbon and I work at Acme on Kubernetes."
    _user_says(text)
    await _turn(cm.chat(first, text, user_id=user))
    console.print("[dim]what extract_entities stored in Postgres for this user (entities, then profile):[/]")
    render_entities(await cm.entities(user))
    render_profile(await cm.profile(user))
    second = f"{tag}-later"
    question = "Where do I live, and where do I work?"
    console.print(f"[dim]a new thread ({second}), same user:[/]")
    _user_says(question)
    answer = await _turn(cm.chat(second, question, user_id=user))
    memory = (await cm.state(second)).values.get("memory_context") or "(nothing matched)"
    console.print(f"[dim]what load_memory gave the model on the new thread:[/]\n{memory}")
    missing = [fact for fact in ("Lisbon", "Acme") if fact not in _mentions(answer.reply, "Lisbon", "Acme")]
    if missing:
        held = _mentions(memory, *missing)
        lost = [fact for fact in missing if fact not in held]
        console.print(
            f"[yellow]note:[/] the answer leaves out {' and '.join(missing)}."
            + (f" Memory gave the model {' and '.join(held)}: it ignored them." if held else "")
            + (f" Memory did not hold {' and '.join(lost)}: extraction missed them." if lost else "")
            + " The local model (SmolLM2-135M) is tiny, so its answers and extractions are often wrong;"
            " the steps work the same with a real model (set OPENAI_BASE_URL or OPENAI_API_KEY)."
        )
    return first


async def _memory_review(cm: Convomem, user: str, tag: str) -> None:
    _step(2, "Memory review: an interrupt, answered with an edited list")
    thread = f"{tag}-review"
    text = "My sister Beatriz moved to Porto last spring."
    _user_says(text)
    final = await _turn(cm.chat(thread, text, user_id=user, review_memory=True))
    if not final.interrupts:
        console.print("[dim]the model proposed nothing to remember, so there was nothing to review[/]")
        return
    edited = [{"type": "PERSON", "value": "Beatriz", "context": "the user's sister, lives in Porto"}]
    console.print(
        "[dim]the review is answered with an edited list, which replaces the proposal (what a review is"
        f" for: a tiny model's proposals are often noise):[/] {edited}"
    )
    await _turn(cm.resume(thread, edited, user_id=user))
    kept = [e for e in await cm.entities(user) if e.value == "Beatriz"]
    console.print(f"[dim]stored:[/] {[(e.value, e.contexts) for e in kept]}")


async def _crash_and_resume(cm: Convomem, user: str, tag: str) -> None:
    _step(3, "A process killed mid-run (SIGKILL), resumed by a new process")
    thread = f"{tag}-crash"
    text = "Tell me a short story about a lighthouse keeper."
    _user_says(text)
    console.print("[dim]a child process runs `convomem chat`; its output is relayed live:[/]")
    child = await _cli("chat", "--thread", thread, "--user", user, "--message", text)
    await _relay(child, stop_after=b"assistant>")
    if child.returncode is None:
        child.send_signal(signal.SIGKILL)
    await child.wait()
    console.print(f"[red]child {child.pid} killed[/] mid-reply with SIGKILL (exit {child.returncode})")
    pending = (await cm.state(thread)).next
    console.print(
        f"[dim]the thread's last checkpoint says next:[/] {', '.join(pending) or '(nothing: done)'}"
    )
    if not pending:
        return
    console.print("[dim]a new process runs `convomem resume`:[/]")
    resumed = await _cli("resume", "--thread", thread, "--user", user)
    await _relay(resumed)
    if await resumed.wait() != 0:
        console.print(f"[red]`convomem resume` exited with {resumed.returncode}[/]")
    state = await cm.state(thread)
    kinds = [m.type for m in state.values.get("messages", [])]
    console.print(f"[dim]thread complete:[/] next={state.next or '()'} messages={kinds}")


async def _replay(cm: Convomem, user: str, thread: str) -> None:
    _step(4, "Replay from an earlier checkpoint")
    history = await cm.history(thread, limit=100)
    before_respond = next(h for h in reversed(history) if h.next_nodes == ("respond",))
    console.print(
        f"[dim]replaying {thread} from checkpoint {before_respond.checkpoint_id}"
        f" (step {before_respond.step})[/]"
    )
    await _turn(cm.replay(thread, before_respond.checkpoint_id, user_id=user))
    render_history(await cm.history(thread, limit=8))
    console.print(f"[dim]{len(await cm.history(thread, limit=1000))} checkpoints: the old branch is kept[/]")


async def _assistant_tools_and_recall(cm: Convomem, user: str, tag: str) -> None:
    _step(5, "An assistant, a tool call, and recall across conversations")
    planted = f"{tag}-trip"
    _user_says(FLIGHT)
    await _turn(cm.chat(planted, FLIGHT, user_id=user))
    asking = f"{tag}-ask"
    console.print(
        f"[dim]a new thread ({asking}) with the `recall` assistant (graphs/assistant_files/recall.toml):"
        " its first message opens the thread, and each turn starts with a search_conversations call"
        " (tool_choice; left to choose, the 135M model never calls a tool)[/]"
    )
    opening = await cm.opening(asking, ASSISTANT)
    console.print(f"[bold blue]assistant>[/] {opening}")
    _user_says(QUESTION)
    answer = await _turn(cm.chat(asking, QUESTION, user_id=user, assistant=ASSISTANT))
    memory = (await cm.state(asking)).values.get("memory_context") or ""
    recalled = memory[memory.find(PASSAGES_HEADER) :] if PASSAGES_HEADER in memory else "(no passage matched)"
    console.print(
        f"[dim]recall across conversations put this in the prompt, without a tool call:[/]\n{recalled}"
    )
    if not _mentions(answer.reply, *FLIGHT_TIME):
        console.print(
            "[yellow]note:[/] the reply does not give the time, though the recalled passage (and the"
            " tool's result, when its query matched) held it: the 135M model reads its context poorly."
            " With a real model (OPENAI_BASE_URL or OPENAI_API_KEY) the same assistant answers from them."
        )


async def run_demo(settings: Settings) -> None:
    tag = f"demo-{time.strftime('%Y%m%d-%H%M%S')}"
    user = tag
    console.print(
        f"[bold]convomem demo[/] — user {user}; data in {settings.database_url or settings.data_dir}"
    )
    async with open_convomem(settings) as cm:
        intro = await _memory_across_threads(cm, user, tag)
        await _memory_review(cm, user, tag)
        await _crash_and_resume(cm, user, tag)
        await _replay(cm, user, intro)
        await _assistant_tools_and_recall(cm, user, tag)
    console.print()
    console.print(f"[bold]done.[/] Continue with: convomem chat --thread {intro} --user {user}")
