"""A fact stated at turn 1 reaches the model at turn 200: after many reductions, summaries and a restart.

Everything runs through the real HTTP model path (langchain-openai against the fake OpenAI-compatible
server) and the real Postgres. Turns 1-199 run in one process through the Python API; turn 200 runs in a
new process through the CLI. 150 other people are mentioned on the way, so the planted entity has to be
picked by relevance, not because it is the only thing remembered.
"""

from __future__ import annotations

import random

import pytest

from graphs.api import Convomem
from graphs.settings import Settings
from tests.e2e.cli_support import Cli, assert_ok, with_api
from tests.fake_openai import FakeOpenAIServer
from tests.integration.support import system_prompt

pytestmark = pytest.mark.slow

THREAD, USER = "planted", "ada"
WORKING_SET_TOKENS = 300
PLANTED = "I live in Reykjavik and my dentist is called Quimby."
QUESTION = "Do you still remember Quimby, and where I live?"
SYLLABLES = ("ka", "lo", "mi", "ren", "dar", "vo", "sel", "tu", "bri", "nax", "po", "gil")


def other_names(count: int) -> list[str]:
    """Distinct capitalised made-up names (the fake extractor turns each into an entity)."""
    rng = random.Random(7)
    names: set[str] = set()
    while len(names) < count:
        names.add("".join(rng.choice(SYLLABLES) for _ in range(3)).capitalize())
    return sorted(names)


def filler(turn: int, names: list[str]) -> str:
    if turn % 4 == 0:
        return f"just chatting along on turn {turn}, nothing new to say about anything at all today"
    name = names[turn % len(names)]
    return f"Yesterday I talked with {name} about the weather and some plans for turn {turn}."


def test_a_fact_from_turn_1_is_in_the_model_input_at_turn_200_after_a_restart(
    cli: Cli, fake_model: FakeOpenAIServer, settings: Settings
) -> None:
    names = other_names(150)
    budget = {"working_set_tokens": WORKING_SET_TOKENS}

    async def turns_1_to_199(cm: Convomem) -> tuple[int, list[str | None]]:
        await cm.send(THREAD, PLANTED, user_id=USER)
        for turn in range(2, 200):
            await cm.send(THREAD, filler(turn, names), user_id=USER)
        snapshot = await cm.state(THREAD)
        return len(snapshot.values["messages"]), [m.id for m in snapshot.values["messages"]]

    working_set, kept_ids = with_api(settings.model_copy(update=budget), turns_1_to_199)
    summaries = fake_model.requests_of("summarize")
    assert len(summaries) >= 20, "expected many reductions over 199 turns"
    assert working_set < 40, "the working set must stay bounded"

    fake_model.clear_requests()
    assert_ok(
        cli.run(
            "chat",
            "--thread",
            THREAD,
            "--user",
            USER,
            "-m",
            QUESTION,
            env={"CONVOMEM_WORKING_SET_TOKENS": str(WORKING_SET_TOKENS)},
        )
    )
    (respond,) = fake_model.requests_of("respond")
    prompt = system_prompt(respond)
    assert "Quimby" in prompt, prompt
    assert "Reykjavik" in prompt, prompt
    later_messages = " ".join(str(m.get("content")) for m in respond["messages"][1:])
    assert "Reykjavik" not in later_messages, "the fact must come from memory, not from the working set"
    assert len(kept_ids) == len(set(kept_ids))
