"""`convomem demo`: a scripted tour that shows memory, a review interrupt, a crash resumed, and a replay."""

from __future__ import annotations

import asyncio
import os
import signal
import sys
import time

from rich.rule import Rule

from graphs.api import Convomem, open_convomem
from graphs.cli_render import console, render_entities, render_history, stream_events
from graphs.settings import Settings

__all__ = ["run_demo"]


def _step(number: int, title: str) -> None:
    console.print()
    console.print(Rule(f"[bold]{number}/4  {title}[/]", align="left"))


def _user_says(text: str) -> None:
    console.print(f"[bold green]you>[/] {text}")


async def _cli(*args: str) -> asyncio.subprocess.Process:
    """The convomem CLI in a child process, unbuffered, so the demo can watch and kill it."""
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    return await asyncio.create_subprocess_exec(
        sys.executable, "-m", "graphs.cli", *args,
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.STDOUT, env=env,
    )  # fmt: skip


async def _memory_across_threads(cm: Convomem, user: str, tag: str) -> str:
    _step(1, "A fact remembered across threads")
    first = f"{tag}-intro"
    text = "Hi! My name is Ada Lovelace. I live in Lisbon and I work at Acme on Kubernetes."
    _user_says(text)
    await stream_events(cm.chat(first, text, user_id=user))
    console.print("[dim]stored in Postgres for this user:[/]")
    render_entities(await cm.entities(user))
    second = f"{tag}-later"
    question = "Where do I live, and where do I work?"
    console.print(f"[dim]a new thread ({second}), same user:[/]")
    _user_says(question)
    await stream_events(cm.chat(second, question, user_id=user))
    memory = (await cm.state(second)).values.get("memory_context") or "(nothing matched)"
    console.print(f"[dim]what load_memory gave the model on the new thread:[/]\n{memory}")
    return first


async def _memory_review(cm: Convomem, user: str, tag: str) -> None:
    _step(2, "Memory review: an interrupt, answered with an edited list")
    thread = f"{tag}-review"
    text = "My sister Beatriz moved to Porto last spring."
    _user_says(text)
    final = await stream_events(cm.chat(thread, text, user_id=user, review_memory=True))
    if not final.interrupts:
        console.print("[dim]the model proposed nothing to remember, so there was nothing to review[/]")
        return
    edited = [{"type": "PERSON", "value": "Beatriz", "context": "the user's sister, lives in Porto"}]
    console.print(f"[dim]resuming with an edited list:[/] {edited}")
    await stream_events(cm.resume(thread, edited, user_id=user))
    kept = [e for e in await cm.entities(user) if e.value == "Beatriz"]
    console.print(f"[dim]stored:[/] {[(e.value, e.contexts) for e in kept]}")


async def _crash_and_resume(cm: Convomem, user: str, tag: str) -> None:
    _step(3, "A process killed mid-run (SIGKILL), resumed by a new process")
    thread = f"{tag}-crash"
    text = "Tell me a short story about a lighthouse keeper."
    _user_says(text)
    child = await _cli("chat", "--thread", thread, "--user", user, "--message", text)
    assert child.stdout is not None
    seen = b""
    while b"assistant>" not in seen:
        chunk = await child.stdout.read(64)
        if not chunk:
            break
        seen += chunk
    if child.returncode is None:
        child.send_signal(signal.SIGKILL)
    await child.wait()
    console.print(f"[red]child {child.pid} killed[/] after its first reply tokens (exit {child.returncode})")
    pending = (await cm.state(thread)).next
    console.print(
        f"[dim]the thread's last checkpoint says next:[/] {', '.join(pending) or '(nothing: done)'}"
    )
    if not pending:
        return
    console.print("[dim]a new process runs `convomem resume`:[/]")
    resumed = await _cli("resume", "--thread", thread, "--user", user)
    output, _ = await resumed.communicate()
    console.print(output.decode(errors="replace").rstrip())
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
    await stream_events(cm.replay(thread, before_respond.checkpoint_id, user_id=user))
    render_history(await cm.history(thread, limit=8))
    console.print(f"[dim]{len(await cm.history(thread, limit=1000))} checkpoints: the old branch is kept[/]")


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
    console.print()
    console.print(f"[bold]done.[/] Continue with: convomem chat --thread {intro} --user {user}")
