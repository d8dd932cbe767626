"""The interactive chat: Ctrl-C cancels a reply, memory work goes on in the background, slash commands."""

from __future__ import annotations

import asyncio
import itertools
import os
import signal
import sys
import threading
from collections.abc import AsyncIterator, Iterator
from contextlib import contextmanager
from typing import TYPE_CHECKING, Any

from rich.markup import escape

from graphs.cli import print_error
from graphs.cli_review import answer_reviews, render_pending, thread_pending
from graphs.events import TurnEnded, TurnEvent
from nodes.errors import ConvomemError

if TYPE_CHECKING:
    from graphs.api import Convomem

__all__ = ["COMMANDS", "Indicator", "Terminal", "run_session"]

COMMANDS = {
    "/help": "list these commands",
    "/pending": "show the memory review or unfinished turn waiting on this thread",
    "/quit": "leave (Ctrl-D too)",
}

_FRAMES = "⠋⠙⠹⠸⠼⠴⠦⠧⠇⠏"
_MAX_LINES_BELOW = 5
"""The indicator stops redrawing once this many lines pushed it up (it may have scrolled away)."""


def _resolve(future: asyncio.Future[bytes], data: bytes) -> None:
    if not future.done():
        future.set_result(data)


def _write(text: str) -> None:
    sys.stdout.write(text)
    sys.stdout.flush()


class Indicator:
    """A spinner line above the prompt while memory work runs; the prompt stays usable below it."""

    def __init__(self, enabled: bool) -> None:
        self.enabled = enabled
        self.text = ""
        self._below = 0
        self._spinner: asyncio.Task[None] | None = None

    def start(self, text: str) -> None:
        if not self.enabled:
            return
        self.text, self._below = text, 0
        _write(f"{_FRAMES[0]} {text}\n")
        self._spinner = asyncio.create_task(self._spin())

    def moved(self) -> None:
        """A new line started below the indicator (Enter, or a prompt shown again)."""
        self._below += 1

    def stop(self, text: str) -> None:
        if self._spinner is None:
            return
        self._spinner.cancel()
        self._spinner = None
        self._draw(text)

    async def _spin(self) -> None:
        for frame in itertools.cycle(_FRAMES):
            await asyncio.sleep(0.12)
            self._draw(f"{frame} {self.text}")

    def _draw(self, line: str) -> None:
        up = self._below + 1
        if up <= _MAX_LINES_BELOW:  # save the cursor, rewrite the indicator's line, restore the cursor
            _write(f"\x1b7\x1b[{up}A\r\x1b[2K{line}\x1b8")


class Terminal:
    """Lines from stdin without blocking the event loop, and at a terminal, what Ctrl-C means now:
    cancel the reply that streams, or at a prompt, a fresh prompt."""

    def __init__(self, interactive: bool) -> None:
        self.interactive = interactive
        self.reply: asyncio.Task[Any] | None = None
        """The reply streaming now; Ctrl-C cancels it."""
        self.indicator = Indicator(interactive)
        self._prompt: str | None = None
        self._unread = b""

    async def line(self, prompt: str) -> str | None:
        """One line without its newline; None at the end of input (Ctrl-D)."""
        loop = asyncio.get_running_loop()
        arrived: asyncio.Future[bytes] = loop.create_future()

        def read() -> None:  # a daemon thread: a pending read never holds up the process's exit
            loop.call_soon_threadsafe(_resolve, arrived, self._read_line())

        _write(prompt)
        self._prompt = prompt
        threading.Thread(target=read, daemon=True).start()
        try:
            data = await arrived
        finally:
            self._prompt = None
        if not data:
            _write("\n" if self.interactive else "")
            return None
        self.indicator.moved()
        try:
            return data.decode("utf-8").rstrip("\r\n")
        except UnicodeDecodeError:
            print_error("that line is not valid UTF-8; type it again.")
            return ""

    def _read_line(self) -> bytes:
        """One line from file descriptor 0, b"" at its end. Not sys.stdin: a read still waiting when the
        process exits (Ctrl-C at a prompt) would hold its buffer's lock, and Python aborts on that."""
        while b"\n" not in self._unread:
            try:
                chunk = os.read(0, 4096)
            except OSError:
                chunk = b""
            if not chunk:
                line, self._unread = self._unread, b""
                return line
            self._unread += chunk
        line, _, self._unread = self._unread.partition(b"\n")
        return line + b"\n"

    def on_interrupt(self) -> None:
        if self.reply is not None and not self.reply.done():
            self.reply.cancel()
        elif self._prompt is not None:  # the terminal already dropped the typed line
            _write("\n" + self._prompt)
            self.indicator.moved()

    @contextmanager
    def handling_interrupts(self) -> Iterator[None]:
        """At a terminal, Ctrl-C goes to on_interrupt instead of ending the process."""
        if not self.interactive:
            yield
            return
        loop = asyncio.get_running_loop()
        loop.add_signal_handler(signal.SIGINT, self.on_interrupt)
        try:
            yield
        finally:
            loop.remove_signal_handler(signal.SIGINT)


class _Session:
    def __init__(
        self, cm: Convomem, thread: str, user: str | None, options: dict[str, Any], term: Terminal
    ) -> None:
        self.cm, self.thread, self.user, self.options, self.term = cm, thread, user, options, term
        self.memory: asyncio.Task[TurnEnded] | None = None
        """The previous turn, still doing its memory work; the next message waits for it."""
        stops = options.get("interrupt_before") or options.get("interrupt_after")
        self.background = term.interactive and not options.get("review_memory") and not stops

    async def run(self) -> None:
        await self.finish_pending()
        while (line := await self.term.line("you> ")) is not None:
            text = line.strip()
            if not text:
                continue
            if text.startswith("/") and not text.startswith("//"):
                if await self.command(text.split()[0].lower()):
                    break
                continue
            await self.settle()
            await self.send(line.strip()[1:] if text.startswith("//") else line)
        await self.settle()

    async def command(self, name: str) -> bool:
        """Run a slash command; True for /quit. Nothing here reaches the model."""
        from graphs.cli_render import console

        if name == "/quit":
            return True
        if name == "/help":
            for command, what in COMMANDS.items():
                console.print(f"{command:<10} {what}", markup=False)
            console.print(
                "other lines go to the assistant; start a line with // to send one beginning with /"
            )
        elif name == "/pending":
            render_pending(self.thread, *await thread_pending(self.cm, self.thread))
        else:
            print_error(f"unknown command {name}: /help lists the commands.")
        return False

    async def send(self, text: str) -> None:
        events = self.cm.chat(self.thread, text, user_id=self.user, reply_done=True, **self.options)
        final = await self.foreground(events, background=self.background)
        if final is not None and self.term.interactive:
            await self.answer(final.interrupts)

    async def answer(self, pending: Any) -> None:
        run = lambda events: self.foreground(events, background=False)  # noqa: E731
        await answer_reviews(self.cm, self.thread, self.user, pending, self.term.line, run)

    async def foreground(self, events: AsyncIterator[TurnEvent], *, background: bool) -> TurnEnded | None:
        """Stream a run's reply; Ctrl-C cancels it until the reply is saved. Then, when `background`, the
        memory work goes on behind the prompt (self.memory). Returns the final event, or None when the run
        went on in the background, was cancelled or failed (reported in one line)."""
        from graphs.cli_render import console, stream_events

        saved = asyncio.Event()
        task = asyncio.create_task(stream_events(events, on_reply_done=saved.set))
        waiter = asyncio.create_task(saved.wait())
        self.term.reply = task
        try:
            await asyncio.wait([task, waiter], return_when=asyncio.FIRST_COMPLETED)
        finally:
            waiter.cancel()
            self.term.reply = None  # the reply is saved: Ctrl-C no longer stops the run
        if not task.done() and background:
            self.term.indicator.start("remembering…")
            task.add_done_callback(self._remembered)
            self.memory = task
            return None
        if not task.done():
            with console.status("remembering…"):
                await asyncio.wait([task])
        if task.cancelled():
            await self._cancelled()
            return None
        if (error := task.exception()) is not None:
            if not isinstance(error, ConvomemError):
                raise error
            print_error(error)
            return None
        return task.result()

    async def _cancelled(self) -> None:
        from graphs.cli_render import console

        _, unfinished_nodes = await thread_pending(self.cm, self.thread)
        if unfinished_nodes:
            console.print(
                "[yellow]reply cancelled[/]: the turn stays unfinished; your next message supersedes it "
                f"(one reply answers both), or `convomem resume --thread {escape(self.thread)}` finishes it"
            )
        else:
            console.print("[yellow]reply cancelled[/]: nothing of that turn was kept")

    def _remembered(self, task: asyncio.Task[TurnEnded]) -> None:
        if task.cancelled():
            self.term.indicator.stop("memory work stopped")
        elif task.exception() is not None:
            self.term.indicator.stop("memory work failed (see below)")
        else:
            self.term.indicator.stop("✓ remembered")

    async def settle(self) -> None:
        """Wait for the previous turn's memory work: the next turn starts when that run ends."""
        memory, self.memory = self.memory, None
        if memory is None:
            return
        self.term.indicator.text = "remembering… your message waits its turn"
        try:
            await memory
        except ConvomemError as error:
            print_error(error)
        except asyncio.CancelledError:
            if not memory.cancelled():
                raise

    async def finish_pending(self) -> None:
        """A thread that waits (review, breakpoint, killed run) is shown first and answered or resumed."""
        from graphs.cli_render import console, render_interrupts

        pending = await self.cm.pending_interrupts(self.thread)
        _, unfinished_nodes = await thread_pending(self.cm, self.thread)
        if pending:
            render_interrupts(pending)
            if self.term.interactive:
                await self.answer(pending)
        elif unfinished_nodes:
            console.print(
                f"[yellow]this thread has an unfinished turn (next: {', '.join(unfinished_nodes)})[/]"
            )
            answer = await self.term.line("finish it now? [Y/n] ") if self.term.interactive else "n"
            if answer is not None and answer.strip().lower() in ("", "y", "yes"):
                await self.foreground(self.cm.resume(self.thread, user_id=self.user), background=False)


async def run_session(cm: Convomem, thread: str, user: str | None, options: dict[str, Any]) -> None:
    """Line after line until Ctrl-D or /quit; a refused message or a failed turn is one line, and the
    session goes on."""
    from graphs.cli_render import console

    term = Terminal(sys.stdin.isatty())
    console.print(
        f"[bold]convomem[/] — thread [cyan]{escape(thread)}[/]; /help lists commands, Ctrl-D or /quit leaves."
    )
    with term.handling_interrupts():
        from graphs.cli_conversation import show_opening

        await show_opening(cm, thread, options.get("assistant"))
        await _Session(cm, thread, user, options, term).run()
