"""What the embedded model does with a tool, measured on the real local model (SmolLM2-135M, llama.cpp).

Plants plain-words facts (recall_eval.CASES), one thread each (for one user per mode), then asks about
each in a new thread with recall across conversations off, so the only way to the fact is the
`search_conversations` tool. Twice:
with the model choosing (`tool_choice=auto`) and with the tool forced on the first round
(`tool_choice=search_conversations`). Counts, per mode: turns that called the tool, calls whose result
held the planted fact (its key word), and replies that used the fact's key word.

    python -m bench.local_tools_eval [--cases N]
"""

from __future__ import annotations

import argparse
import asyncio
import tempfile
import time
from pathlib import Path

from bench.db import create_database
from bench.recall_eval import CASES
from checkpoint.embedded import start_embedded, stop_embedded
from graphs.api import ToolCall, ToolResult, TurnEnded, open_convomem
from graphs.settings import Settings
from nodes.model_server import stop_server

__all__ = ["main"]

KEY_WORDS = ("six", "flower", "march", "peanuts", "seven", "three", "september")
"""A word of each planted fact a reply that used it would repeat (same order as CASES)."""
MODES = ("auto", "search_conversations")
USERS = {"auto": "chooses", "search_conversations": "forced"}
"""One user per mode, so one mode's questions are not among the other's search results."""


async def ask(settings: Settings, cases: int) -> dict[str, list[int]]:
    counts = {mode: [0, 0, 0, 0.0] for mode in MODES}
    for mode in MODES:
        tuned = settings.model_copy(update={"tool_choice": mode})
        async with open_convomem(tuned) as cm:
            for index, ((_, question), key) in enumerate(zip(CASES[:cases], KEY_WORDS, strict=False)):
                started = time.perf_counter()
                called = found = False
                reply = ""
                async for event in cm.chat(f"ask-{mode}-{index}", question, user_id=USERS[mode]):
                    called |= isinstance(event, ToolCall)
                    found |= isinstance(event, ToolResult) and key in event.content.lower()
                    if isinstance(event, ToolCall):
                        print(f"    call {event.name}({event.args})", flush=True)
                    if isinstance(event, TurnEnded):
                        reply = event.reply or ""
                counts[mode][0] += called
                counts[mode][1] += found
                counts[mode][2] += key in reply.lower()
                counts[mode][3] += time.perf_counter() - started
                print(
                    f"  [{mode}] {question} -> tool={called} found={found} reply={reply[:80]!r}", flush=True
                )
    return counts  # type: ignore[return-value]


async def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.local_tools_eval", description=__doc__)
    parser.add_argument("--cases", type=int, default=len(KEY_WORDS))
    args = parser.parse_args(argv)
    data_dir = Path(tempfile.mkdtemp(prefix="convomem-tools-eval-"))
    try:
        root = await asyncio.to_thread(start_embedded, data_dir)
        url = await asyncio.to_thread(create_database, root, "tools_eval")
        settings = Settings(
            database_url=url, data_dir=data_dir, recall_passages=0, tools="search_conversations"
        )
        async with open_convomem(settings) as cm:
            for user in USERS.values():
                for index, (fact, _) in enumerate(CASES[: args.cases]):
                    await cm.send(f"{user}-fact-{index}", fact, user_id=user)
        counts = await ask(settings, args.cases)
    finally:
        await asyncio.to_thread(stop_server, data_dir)
        await asyncio.to_thread(stop_embedded, data_dir)
    print(f"the embedded model with the search_conversations tool, recall off, {args.cases} questions:")
    for mode, (called, found, used, seconds) in counts.items():
        print(
            f"  tool_choice={mode}: called the tool {called}/{args.cases}, found the fact "
            f"{found}/{args.cases}, reply used it {used}/{args.cases}, {seconds / args.cases:.1f} s per turn"
        )
    return 0


if __name__ == "__main__":
    raise SystemExit(asyncio.run(main()))
