"""Recall across conversations on real Postgres: the OR full-text ranking over the transcript, the user's
own rows only, never the current thread; and through the Python API, the planted sentence of thread A in
the prompt of thread B right after A's turn ends, for the same user only."""

from __future__ import annotations

from datetime import datetime

import pytest
from langchain_core.messages import AIMessage, AnyMessage, HumanMessage

from checkpoint.persistence import Persistence
from checkpoint.recall import TranscriptRecall
from checkpoint.transcript import TranscriptArchive
from graphs.api import Convomem
from graphs.settings import Settings
from nodes.errors import InvalidInput
from nodes.recall import PASSAGES_HEADER
from tests.fake_openai import FakeOpenAIServer
from tests.integration.support import system_prompt

PLANTED = "my flight leaves at half past six on tuesday"
QUESTION = "when does my flight leave?"


def said(thread: str, *texts: str, ai: bool = False) -> list[AnyMessage]:
    kind = AIMessage if ai else HumanMessage
    return [kind(content=text, id=f"{thread}-{'a' if ai else 'h'}{i}") for i, text in enumerate(texts)]


@pytest.fixture
async def recall(persistence: Persistence) -> TranscriptRecall:
    archive = TranscriptArchive(persistence.pool, "english")
    await archive("a", "u1", said("a", PLANTED, "I like green tea in the morning"))
    await archive("a", "u1", said("a", "Noted: your flight leaves on tuesday.", ai=True))
    await archive("b", "u1", said("b", "the weather is nice", "my flight number is long"))
    await archive("x", "u2", said("x", "my flight leaves at noon on friday", "flight flight leave"))
    return TranscriptRecall(persistence.pool, "english")


async def test_a_question_finds_the_statement_that_answers_it(recall: TranscriptRecall) -> None:
    found = await recall("u1", "current", QUESTION, 10)
    assert found, "no passage matched"
    best = found[0]
    assert (best.text, best.thread_id, best.role) == (PLANTED, "a", "human")
    assert best.matched == ["flight", "leave"]  # "when", "does", "my" are stop words
    assert isinstance(best.created_at, datetime)
    # the assistant's reply shares as many words but a user's statement comes first; one word ranks last
    assert [p.text for p in found] == [
        PLANTED,
        "Noted: your flight leaves on tuesday.",
        "my flight number is long",
    ]
    assert found[0].score > found[1].score > found[2].score


async def test_never_another_users_passages_even_when_they_share_every_word(recall: TranscriptRecall) -> None:
    for text in (QUESTION, "flight leave noon friday", PLANTED, "flight"):
        assert all(p.thread_id != "x" for p in await recall("u1", None, text, 50))
        assert {p.thread_id for p in await recall("u2", None, text, 50)} <= {"x"}
    assert await recall("nobody", None, "flight leave", 50) == []


async def test_the_current_thread_is_left_out(recall: TranscriptRecall) -> None:
    assert {p.thread_id for p in await recall("u1", None, "flight", 10)} == {"a", "b"}
    assert {p.thread_id for p in await recall("u1", "a", "flight", 10)} == {"b"}
    assert [p.thread_id for p in await recall("u1", "b", "tea", 10)] == ["a"]


async def test_stop_words_symbols_and_sql_find_nothing_and_break_nothing(recall: TranscriptRecall) -> None:
    assert await recall("u1", None, "when does it?", 10) == []
    assert await recall("u1", None, "!!! ??? ''' -- ; \x00", 10) == []
    assert await recall("u1", None, "'); DROP TABLE convomem_transcript; -- or or and", 10) == []
    assert [p.text for p in await recall("u1", None, 'FLIGHT -leaves "tuesday"', 1)] == [PLANTED]
    with pytest.raises(InvalidInput):
        await recall("bad user!", None, "flight", 10)


async def test_the_limit_holds(recall: TranscriptRecall) -> None:
    assert len(await recall("u1", None, "flight leave tea weather", 2)) == 2


# ----------------------------------------------------------------------------------- through the API


async def test_a_sentence_of_thread_a_reaches_the_prompt_of_thread_b_for_the_same_user_only(
    app: Convomem, fake_model: FakeOpenAIServer
) -> None:
    await app.send("thread-a", PLANTED, user_id="u1")
    fake_model.clear_requests()
    await app.send("thread-b", QUESTION, user_id="u1")
    (respond,) = fake_model.requests_of("respond")
    prompt = system_prompt(respond)
    assert PASSAGES_HEADER in prompt and PLANTED in prompt, prompt
    trace = (await app.state("thread-b")).values["memory_trace"]
    (passage,) = [entry for entry in trace if entry["key"] == "passage" and entry["role"] == "human"]
    assert (passage["thread"], passage["value"], passage["matched"]) == (
        "thread-a",
        PLANTED,
        ["flight", "leave"],
    )

    fake_model.clear_requests()
    await app.send("thread-c", QUESTION, user_id="u2")
    (respond,) = fake_model.requests_of("respond")
    assert PLANTED not in system_prompt(respond)
    assert not [e for e in (await app.state("thread-c")).values["memory_trace"] if e["key"] == "passage"]


async def test_no_passages_when_recall_is_off(settings: Settings, fake_model: FakeOpenAIServer) -> None:
    from graphs.api import open_convomem

    async with open_convomem(settings.model_copy(update={"recall_passages": 0})) as app:
        await app.send("thread-a", PLANTED, user_id="u1")
        fake_model.clear_requests()
        await app.send("thread-b", QUESTION, user_id="u1")
    (respond,) = fake_model.requests_of("respond")
    assert PLANTED not in system_prompt(respond)
