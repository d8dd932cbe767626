"""A one-shot client of the Python API, for tests that need several real processes on one thread (the CLI
has no --on-busy flag yet). Reads settings from the environment like the CLI:

    python -m tests.e2e.api_client chat THREAD TEXT [--on-busy S] [--busy-timeout SECONDS]
    python -m tests.e2e.api_client resume THREAD [--on-busy S] [--busy-timeout SECONDS]

prints one JSON line, {"ok": true, "reply": ..., "next": [...]} or {"ok": false, "error": "<class>",
"message": ...}, and exits 0 or 1.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
from typing import Any

from checkpoint.locks import BUSY_TIMEOUT, check_on_busy
from graphs.api import TurnEnded, open_convomem
from graphs.settings import Settings
from nodes.errors import ConvomemError

__all__ = ["main"]


async def _turn(args: argparse.Namespace) -> dict[str, Any]:
    on_busy = check_on_busy(args.on_busy)
    async with open_convomem(Settings()) as cm:
        if args.command == "chat":
            events = cm.chat(args.thread, args.text, on_busy=on_busy, busy_timeout=args.busy_timeout)
        else:
            events = cm.resume(args.thread, on_busy=on_busy, busy_timeout=args.busy_timeout)
        ended = [event async for event in events if isinstance(event, TurnEnded)][-1]
    return {"ok": True, "reply": ended.reply, "next": list(ended.next_nodes)}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("command", choices=("chat", "resume"))
    parser.add_argument("thread")
    parser.add_argument("text", nargs="?", default="")
    parser.add_argument("--on-busy", default="reject")
    parser.add_argument("--busy-timeout", type=float, default=BUSY_TIMEOUT)
    args = parser.parse_args(argv)
    try:
        outcome = asyncio.run(_turn(args))
    except ConvomemError as error:
        outcome = {"ok": False, "error": type(error).__name__, "message": str(error)}
    print(json.dumps(outcome), flush=True)
    return 0 if outcome["ok"] else 1


if __name__ == "__main__":
    sys.exit(main())
