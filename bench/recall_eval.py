"""Recall across conversations, measured: planted plain-words facts reaching the prompt of another thread.

Two users each plant 20 facts with no names in them (each in its own thread), sharing their words with
each other's facts; then each asks 20 questions, each in a new thread. Counted from what the chat model
received (its system prompt) and from state's `memory_trace`: how many planted facts reach the prompt,
and how many passages of the other user did (must be 0). Embedded Postgres, an in-process fake model
(bench.fake_model), no real LLM.

    python -m bench.recall_eval [--recall-passages N] [--memory-tokens N]
"""

from __future__ import annotations

import argparse
import asyncio
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from langchain_core.messages import BaseMessage
from pydantic import Field

from bench.db import create_database
from bench.fake_model import FakeChatModel
from checkpoint.embedded import start_embedded, stop_embedded
from graphs.api import open_convomem
from graphs.settings import Settings
from nodes.prompts import SUMMARY_SYSTEM

__all__ = ["CASES", "Score", "main", "measure"]

CASES: tuple[tuple[str, str], ...] = (
    ("my flight leaves at half past six on tuesday", "when does my flight leave?"),
    ("the spare key is under the blue flower pot by the door", "where did I put the spare key?"),
    ("my dentist appointment is on the third of march", "when is my dentist appointment?"),
    ("I am allergic to peanuts and shellfish", "which foods should I avoid?"),
    ("my locker code is four seven two nine", "what was my locker code again?"),
    ("the car is parked on level three near the lifts", "where is the car parked?"),
    ("my sister has her birthday in late september", "when is my sister's birthday?"),
    ("I take the blood pressure pills every morning with breakfast", "when do I take my pills?"),
    ("the wifi password is written on the back of the router", "where is the wifi password?"),
    ("my gym membership renews every january", "when does the gym membership renew?"),
    ("I prefer a window seat on long train rides", "which seat do I like on the train?"),
    ("the plumber is coming on friday afternoon to fix the sink", "when is the plumber coming?"),
    ("my favourite tea is green tea with fresh mint", "what do I like to drink?"),
    ("I left my umbrella at the office last week", "where did I leave my umbrella?"),
    ("the rent is due on the first day of every month", "when is the rent due?"),
    ("the cat needs her vaccine shot in april", "when does the cat need her vaccine?"),
    ("I am learning to play the cello on weekends", "what am I studying in my free time?"),
    ("my passport expires in the summer of next year", "when does my passport expire?"),
    ("the library books have to go back next thursday", "when do the library books go back?"),
    ("I keep the tax papers in the grey folder in the bottom drawer", "where are my tax papers?"),
)
"""(planted statement, question asked in another thread). Plain words only: nothing an entity extractor
picks up, so only recall of passages can bring the statement back. Three questions (foods, drink, free
time) share no content word with their fact: full text cannot find them; only meaning (the hybrid) can."""
OTHER = "{fact}, says somebody else entirely"
"""The second user's version of each fact: the same words and a marker that must never reach the first."""
USERS = ("u1", "u2")


class RecordingModel(FakeChatModel):
    """The bench's instant fake model, keeping the system prompt of every reply request."""

    prompts: list[str] = Field(default_factory=list)

    def _reply(self, messages: list[BaseMessage], bench_tool: str | None) -> Any:
        system = str(messages[0].content)
        if bench_tool is None and not system.startswith(SUMMARY_SYSTEM):
            self.prompts.append(system)
        return super()._reply(messages, bench_tool)


@dataclass
class Score:
    asked: int = 0
    reached: int = 0
    """Questions whose own planted fact was in the prompt the model received."""
    passages: int = 0
    """Passages brought in, over all questions."""
    leaked: int = 0
    """Passages of the other user (by trace thread, or by the other user's marker text in the prompt)."""
    missed: list[str] | None = None


def planted(user: str, fact: str) -> str:
    return fact if user == "u1" else OTHER.format(fact=fact)


async def measure(settings: Settings) -> dict[str, Score]:
    model = RecordingModel()
    scores = {user: Score(missed=[]) for user in USERS}
    async with open_convomem(settings, model=model) as cm:
        for index, (fact, _) in enumerate(CASES):
            for user in USERS:
                await cm.send(f"{user}-fact-{index}", planted(user, fact), user_id=user)
        for index, (fact, question) in enumerate(CASES):
            for user in USERS:
                other = USERS[1 - USERS.index(user)]
                thread = f"{user}-ask-{index}"
                model.prompts.clear()
                await cm.send(thread, question, user_id=user)
                prompt = model.prompts[-1]
                trace = (await cm.state(thread)).values.get("memory_trace", [])
                passages = [entry for entry in trace if entry.get("key") == "passage"]
                score = scores[user]
                score.asked += 1
                score.passages += len(passages)
                score.leaked += sum(1 for p in passages if str(p["thread"]).startswith(f"{other}-"))
                score.leaked += int(user == "u1" and "somebody else entirely" in prompt)
                if planted(user, fact) in prompt:
                    score.reached += 1
                elif score.missed is not None:
                    score.missed.append(question)
    return scores


def report(scores: dict[str, Score], recall_passages: int) -> str:
    lines = [f"recall across conversations (recall_passages={recall_passages}, full text)"]
    for user, score in scores.items():
        lines.append(
            f"  {user}: {score.reached}/{score.asked} planted facts reached the prompt; "
            f"{score.passages} passages brought in; {score.leaked} from the other user"
        )
        lines += [f"    missed: {question}" for question in score.missed or []]
    reached = sum(s.reached for s in scores.values())
    asked = sum(s.asked for s in scores.values())
    leaked = sum(s.leaked for s in scores.values())
    lines.append(f"  total: {reached}/{asked} reached, {leaked} leaked to another user")
    return "\n".join(lines)


async def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.recall_eval", description=__doc__)
    parser.add_argument("--recall-passages", type=int, default=Settings().recall_passages)
    parser.add_argument("--memory-tokens", type=int, default=Settings().memory_tokens)
    args = parser.parse_args(argv)
    data_dir = Path(tempfile.mkdtemp(prefix="convomem-recall-eval-"))
    try:
        root = await asyncio.to_thread(start_embedded, data_dir)
        url = await asyncio.to_thread(create_database, root, "recall_eval")
        settings = Settings(
            database_url=url,
            data_dir=data_dir,
            recall_passages=args.recall_passages,
            memory_tokens=args.memory_tokens,
        )
        scores = await measure(settings)
    finally:
        await asyncio.to_thread(stop_embedded, data_dir)
    print(report(scores, args.recall_passages))
    return 1 if any(score.leaked for score in scores.values()) else 0


if __name__ == "__main__":
    raise SystemExit(asyncio.run(main()))
