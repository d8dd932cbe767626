"""Scenarios 1, 9 and 10 on one conversation per path and database (four turns, run once and shared):
the settings reach the model and the fold, compaction drops old step checkpoints, and the transcript
keeps every message once. Each path's conversation is also compared with the Python API's."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from checkpoint.thread_info import thread_title
from tests.integration.support import system_prompt
from tests.parity.drivers import Outcome
from tests.parity.probe import ThreadView
from tests.parity.rig import INSTRUCTIONS, PROFILE, Rig

TURNS = (
    "Turn one: I visited Lisbon with Marta and we talked about trams, bridges and tiled houses.",
    "Turn two: later we took the train to Porto and ate grilled sardines near the river Douro.",
    "Turn three: on Sunday Marta showed me the bookshop Lello and its famous red staircase.",
    "Turn four: we flew home from Faro after a week of beaches, cliffs and long quiet walks.",
)
"""Each turn is about 45 tokens with its reply: over the 64-token working set from the second turn."""


@dataclass(frozen=True)
class Shape:
    """A thread after a turn, as far as the settings decide it."""

    messages: int
    summary: bool
    next: tuple[str, ...]


@dataclass(frozen=True)
class Conversation:
    thread: str
    user: str
    outcomes: tuple[Outcome, ...]
    shapes: tuple[Shape, ...]
    """After each turn."""
    respond_requests: tuple[dict[str, Any], ...]
    final: ThreadView


async def conversation(rig: Rig, path: str, db: str) -> Conversation:
    """The four turns through `path` on a new thread and user, once per run of the suite."""

    async def talk() -> Conversation:
        driver, probe = await rig.driver(path, db), await rig.probe(db)
        thread, user = await driver.new_thread(), f"talk-{path}-{db}"
        outcomes, shapes, requests = [], [], []
        for text in TURNS:
            seen = len(rig.model.requests)
            outcomes.append(await driver.send(thread, text, user))
            requests += [r for r in rig.model.requests[seen:] if r["kind"] == "respond"]
            view = await probe.view(thread)
            shapes.append(Shape(len(view.messages), view.summary is not None, view.next))
        return Conversation(
            thread, user, tuple(outcomes), tuple(shapes), tuple(requests), await probe.view(thread)
        )

    return await rig.once(("conversation", path, db), talk)


def reply_token_cap(request: dict[str, Any]) -> Any:
    """ChatOpenAI sends `max_tokens` under OpenAI's current name for it, `max_completion_tokens`."""
    return request.get("max_tokens", request.get("max_completion_tokens"))


def assert_turns_ok(talk: Conversation) -> None:
    for number, outcome in enumerate(talk.outcomes, 1):
        assert outcome.ok, f"turn {number}: {outcome}"


async def test_settings_reach_the_model_and_the_fold(rig: Rig, path: str, db: str) -> None:
    talk = await conversation(rig, path, db)
    reference = await conversation(rig, "api", db)
    assert_turns_ok(talk)

    assert len(talk.respond_requests) == len(TURNS)
    for request in talk.respond_requests:
        assert system_prompt(request).startswith(INSTRUCTIONS), system_prompt(request)[:300]
        assert request.get("temperature") == PROFILE["temperature"], request
        assert reply_token_cap(request) == PROFILE["max_tokens"], request
    folded = [number for number, shape in enumerate(talk.shapes, 1) if shape.summary]
    assert folded, f"no summary after {len(TURNS)} turns: {talk.shapes}"
    assert talk.shapes[folded[0] - 1].messages < 2 * folded[0], talk.shapes  # folded, not just summarized
    assert all(shape.next == () for shape in talk.shapes), talk.shapes
    assert talk.shapes == reference.shapes  # the same fold after the same turn as the Python API


async def test_compaction_drops_old_step_checkpoints(rig: Rig, path: str, db: str) -> None:
    talk = await conversation(rig, path, db)
    reference = await conversation(rig, "api", db)
    probe = await rig.probe(db)
    assert_turns_ok(talk)

    per_run = probe.checkpoints_per_run(talk.thread)
    assert len(per_run) == len(TURNS), per_run
    # Compaction runs at least every `compact_every` turns and keeps every step of the newest
    # `step_history_turns`: turns older than both together keep only their last checkpoint.
    window = PROFILE["compact_every"] + PROFILE["step_history_turns"]
    assert per_run[: len(TURNS) - window] == [1] * (len(TURNS) - window), per_run
    assert per_run == probe.checkpoints_per_run(reference.thread)  # as many as the Python API keeps
    history = await probe.history(talk.thread)
    assert len(history) == sum(per_run)  # what history lists is what is stored


async def test_transcript_keeps_every_message_once(rig: Rig, path: str, db: str) -> None:
    talk = await conversation(rig, path, db)
    probe = await rig.probe(db)
    assert_turns_ok(talk)

    entries = await probe.transcript(talk.thread)
    assert [e.role for e in entries] == ["human", "ai"] * len(TURNS), [(e.role, e.content) for e in entries]
    assert [e.content for e in entries if e.role == "human"] == list(TURNS)
    assert len({e.message_id for e in entries}) == len(entries)
    assert {e.user_id for e in entries} == {talk.user}
    assert len(talk.final.messages) < len(entries), "nothing folded: the transcript was not put to work"
    assert set(talk.final.ids) <= {e.message_id for e in entries}  # what stays is archived as it is


async def test_every_path_keeps_the_thread_row(rig: Rig, path: str, db: str) -> None:
    """The thread's row (owner, title, count) is written by the graph, so the server keeps it too."""
    talk = await conversation(rig, path, db)
    probe = await rig.probe(db)
    assert_turns_ok(talk)

    [info] = await probe.cm.threads(user=talk.user)
    assert (info.thread_id, info.status, info.messages) == (talk.thread, "active", 2 * len(TURNS))
    assert talk.final.summary, "the conversation folded"
    assert info.title == thread_title([], talk.final.summary), "titled by the summary's first sentence"
