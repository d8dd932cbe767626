"""Cold resume, the child side: a new process starts the embedded Postgres, opens convomem, sends a turn.

`python -m bench.cold URL DATA_DIR THREAD USER` prints one JSON line of wall-clock marks (time.time()):
imports done, Postgres started, convomem opened, first streamed token, turn done. The parent subtracts
the moment it spawned this process, so interpreter start-up is included.
"""

from __future__ import annotations

import asyncio
import json
import sys
import time
from pathlib import Path

from bench.fake_model import FakeChatModel
from bench.workload import user_message
from checkpoint.embedded import start_embedded
from graphs.api import ReplyToken, open_convomem
from graphs.settings import Settings

__all__ = ["main"]

MARKS: dict[str, float] = {"imports": time.time()}


async def _run(url: str, data_dir: Path, thread_id: str, user_id: str) -> None:
    await asyncio.to_thread(start_embedded, data_dir)
    MARKS["postgres"] = time.time()
    settings = Settings(database_url=url, data_dir=data_dir, tools="none")  # as the convomem variant
    async with open_convomem(settings, model=FakeChatModel()) as cm:
        MARKS["opened"] = time.time()
        async for event in cm.chat(thread_id, user_message(7, 10_000), user_id=user_id):
            if isinstance(event, ReplyToken) and "first_token" not in MARKS:
                MARKS["first_token"] = time.time()
        MARKS["turn_done"] = time.time()


def main(argv: list[str]) -> None:
    url, data_dir, thread_id, user_id = argv
    asyncio.run(_run(url, Path(data_dir), thread_id, user_id))
    print(json.dumps(MARKS), flush=True)


if __name__ == "__main__":
    main(sys.argv[1:])
