"""Memory work stays off the reply's critical path: the caller has the whole reply before memory answers."""

from __future__ import annotations

import threading
from typing import Any

import pytest

from graphs.api import Convomem, ReplyToken, TurnEnded
from graphs.settings import Settings
from tests import fake_openai
from tests.fake_openai import FakeOpenAIServer
from tests.integration.support import finish

MEMORY_DELAY = 1.0
"""Seconds the fake server holds each extraction and summary answer: any reply token that waited for
memory work would be logged after that answer."""


@pytest.fixture
def settings(settings: Settings) -> Settings:
    """A working set so small that the second turn folds the first one: both memory calls happen."""
    return settings.model_copy(update={"working_set_tokens": 64})


class EventLog:
    """One ordered record of what the caller received and when the server released each answer."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self.entries: list[str] = []

    def add(self, entry: str) -> None:
        with self._lock:
            self.entries.append(entry)

    def index(self, entry: str) -> int:
        assert self.entries.count(entry) == 1, f"{entry!r} expected once in {self.entries}"
        return self.entries.index(entry)


@pytest.fixture
def log(monkeypatch: pytest.MonkeyPatch) -> EventLog:
    """Logs `answered <kind>` on the server thread just before an answer's first byte is written."""
    events = EventLog()
    answer: Any = fake_openai._Handler._answer

    def logged_answer(handler: Any, kind: str, body: dict[str, Any], malformed: bool) -> None:
        events.add(f"answered {kind}")
        answer(handler, kind, body, malformed)

    monkeypatch.setattr(fake_openai._Handler, "_answer", logged_answer)
    return events


async def test_reply_tokens_reach_the_caller_before_extraction_and_summary_answer(
    app: Convomem, fake_model: FakeOpenAIServer, log: EventLog
) -> None:
    await finish(app.chat("t1", "My name is Ada and I work at Acme. " * 8))
    fake_model.clear_requests()
    log.entries.clear()
    fake_model.set_delay("extract", MEMORY_DELAY)
    fake_model.set_delay("summarize", MEMORY_DELAY)

    tokens: list[str] = []
    ended: TurnEnded | None = None
    async for event in app.chat("t1", "I moved to Oslo last spring."):
        if isinstance(event, ReplyToken):
            tokens.append(event.text)
            log.add("caller token")
        else:
            ended = event
            log.add("caller ended")

    # The turn really did both memory calls, and the streamed tokens are the reply.
    assert ended is not None and ended.reply == "".join(tokens)
    assert sorted(r["kind"] for r in fake_model.requests) == ["extract", "respond", "summarize"]
    assert (await app.state("t1")).values["summary"].startswith("SUMMARY: ")

    entries = log.entries
    last_token = max(i for i, e in enumerate(entries) if e == "caller token")
    assert log.index("answered respond") < entries.index("caller token")
    assert last_token < log.index("answered extract"), entries
    assert last_token < log.index("answered summarize"), entries
    assert max(log.index("answered extract"), log.index("answered summarize")) < log.index("caller ended")
