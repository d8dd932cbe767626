"""A one-shot Python API client with two side-effect tools, for the crash-inside-a-tool test. Settings come
from the environment like the CLI's; TOOL_LOG names the file every tool call is appended to:

    python -m tests.e2e.tool_client chat THREAD TEXT
    python -m tests.e2e.tool_client resume THREAD

`record(item)` appends `record <item> <call id>`; `block()` appends `block <call id>` and, while
TOOL_BLOCK=1, then waits forever (the test kills the process there). Prints the reply and exits 0.
"""

from __future__ import annotations

import asyncio
import os
import sys
from pathlib import Path
from typing import Annotated

from langchain_core.tools import InjectedToolCallId, tool

from graphs.api import TurnEnded, open_convomem
from graphs.settings import Settings

__all__ = ["main"]


def _log(line: str) -> None:
    with Path(os.environ["TOOL_LOG"]).open("a", encoding="utf-8") as log:
        log.write(line + "\n")
        log.flush()
        os.fsync(log.fileno())


@tool
async def record(item: str, tool_call_id: Annotated[str, InjectedToolCallId]) -> str:
    """Record an item (a side effect: one line in the log per call)."""
    _log(f"record {item} {tool_call_id}")
    return f"recorded {item}"


@tool
async def block(tool_call_id: Annotated[str, InjectedToolCallId]) -> str:
    """Hang while TOOL_BLOCK=1, as a tool stuck on a slow service."""
    _log(f"block {tool_call_id}")
    if os.environ.get("TOOL_BLOCK") == "1":
        await asyncio.Event().wait()
    return "unblocked"


async def _turn(command: str, thread: str, text: str) -> str | None:
    async with open_convomem(Settings(), tools=[record, block]) as cm:
        events = cm.chat(thread, text) if command == "chat" else cm.resume(thread)
        ended = [event async for event in events if isinstance(event, TurnEnded)][-1]
    return ended.reply


def main(argv: list[str] | None = None) -> int:
    command, thread, *rest = argv if argv is not None else sys.argv[1:]
    print(asyncio.run(_turn(command, thread, rest[0] if rest else "")), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
