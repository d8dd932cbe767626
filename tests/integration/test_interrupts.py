"""Memory review interrupts and static breakpoints: pause, persist, resume, and refuse what cannot work."""

from __future__ import annotations

from typing import Any

import pytest

from graphs.api import Convomem, open_convomem
from graphs.settings import Settings
from nodes.errors import InvalidInput, NothingToResume, UnknownThread
from tests.fake_openai import FakeOpenAIServer
from tests.integration.support import checkpoint_ids, finish, message_texts, rows

INTRODUCTION = "My name is Alice and I work at Acme."
PROPOSED = {"Alice", "Acme"}


def entity_rows(database_url: str, user_id: str = "default") -> list[str]:
    found = rows(
        database_url,
        "SELECT key FROM store WHERE prefix = %s ORDER BY key",
        (f"convomem.users.{user_id}.entities",),
    )
    return [row[0] for row in found]


def extracted_marker(database_url: str, message_id: str, user_id: str = "default") -> dict[str, Any] | None:
    found = rows(
        database_url,
        "SELECT value FROM store WHERE prefix = %s AND key = %s",
        (f"convomem.users.{user_id}.extracted", message_id),
    )
    return found[0][0] if found else None


async def human_id(app: Convomem, thread_id: str) -> str:
    messages = (await app.state(thread_id)).values["messages"]
    return str(next(m.id for m in reversed(messages) if m.type == "human"))


# ----------------------------------------------------------------------------- memory review


async def test_review_pauses_before_anything_is_remembered(
    app: Convomem, fake_model: FakeOpenAIServer, database_url: str
) -> None:
    ended = await app.send("t", INTRODUCTION, review_memory=True)

    assert ended.next_nodes == ("extract_entities",)
    [pending] = ended.interrupts
    assert pending.value["type"] == "memory_review"
    assert pending.value["message_id"] == await human_id(app, "t")
    assert {e["value"] for e in pending.value["entities"]} == PROPOSED
    assert await app.pending_interrupts("t") == ended.interrupts
    assert ended.reply is not None  # respond ran before the review
    assert entity_rows(database_url) == []
    assert extracted_marker(database_url, pending.value["message_id"]) is None
    assert await app.entities() == []


@pytest.mark.parametrize(
    ("answer", "kept"),
    [
        ("approve", PROPOSED),
        (True, PROPOSED),
        ("reject", set()),
        (False, set()),
        ([{"type": "PERSON", "value": "Bob", "context": "edited"}], {"Bob"}),
        ({"entities": [{"type": "ORG", "value": "Acme"}]}, {"Acme"}),
        ([], set()),
    ],
    ids=["approve", "true", "reject", "false", "edited-list", "edited-dict", "empty-list"],
)
async def test_review_answer_decides_what_is_stored(
    app: Convomem, fake_model: FakeOpenAIServer, database_url: str, answer: Any, kept: set[str]
) -> None:
    await app.send("t", INTRODUCTION, review_memory=True)
    message_id = await human_id(app, "t")

    # review_memory=True repeated on resume: see test_resume_applies_the_review_of_the_paused_turn.
    ended = await finish(app.resume("t", answer, review_memory=True))

    assert ended.next_nodes == ()
    assert ended.interrupts == ()
    assert {e.value for e in await app.entities()} == kept
    assert len(entity_rows(database_url)) == len(kept)
    assert extracted_marker(database_url, message_id) == {
        "message_id": message_id,
        "stored": len(kept),
        "error": None,
    }
    # The proposal is a task result: resuming did not ask the model to extract again.
    assert len(fake_model.requests_of("extract")) == 1
    assert len(fake_model.requests_of("respond")) == 1


async def test_edited_entities_are_stored_exactly(app: Convomem, database_url: str) -> None:
    await app.send("t", INTRODUCTION, review_memory=True)
    edited = [
        {"type": "person", "value": "  Alice   Smith ", "context": "her full name", "confidence": 0.5},
        {"type": "LOC", "value": "Porto"},
    ]
    await finish(app.resume("t", edited, review_memory=True))

    records = {e.value: e for e in await app.entities()}
    assert set(records) == {"Alice Smith", "Porto"}
    assert records["Alice Smith"].type == "PERSON"
    assert records["Alice Smith"].contexts == ["her full name"]
    assert records["Alice Smith"].confidence == 0.5
    assert records["Porto"].type == "LOC"
    assert entity_rows(database_url) == ["LOC:porto", "PERSON:alice_smith"]


@pytest.mark.parametrize(
    ("answer", "kept"), [("reject", set()), ([{"type": "PERSON", "value": "Bob"}], {"Bob"})]
)
async def test_resume_applies_the_review_of_the_paused_turn(
    app: Convomem, database_url: str, answer: Any, kept: set[str]
) -> None:
    await app.send("t", INTRODUCTION, review_memory=True)
    await finish(app.resume("t", answer))
    assert {e.value for e in await app.entities()} == kept


async def test_resume_remembers_for_the_user_of_the_paused_turn(app: Convomem, database_url: str) -> None:
    await app.send("t", INTRODUCTION, user_id="u1", review_memory=True)
    await finish(app.resume("t", "approve", review_memory=True))
    assert entity_rows(database_url, "default") == []
    assert {e.value for e in await app.entities("u1")} == PROPOSED


async def test_review_survives_a_new_process(settings: Settings, database_url: str) -> None:
    async with open_convomem(settings) as app:
        paused = await app.send("t", INTRODUCTION, review_memory=True)
    async with open_convomem(settings) as app:
        assert await app.pending_interrupts("t") == paused.interrupts
        assert (await app.state("t")).next == ("extract_entities",)
        ended = await finish(app.resume("t", "approve", review_memory=True))
        assert ended.next_nodes == ()
        assert {e.value for e in await app.entities()} == PROPOSED


async def test_no_review_when_nothing_was_found(app: Convomem, database_url: str) -> None:
    ended = await app.send("t", "nothing worth remembering here", review_memory=True)
    assert ended.interrupts == ()
    assert ended.next_nodes == ()
    assert extracted_marker(database_url, await human_id(app, "t")) == {
        "message_id": await human_id(app, "t"),
        "stored": 0,
        "error": None,
    }


async def test_new_message_while_review_pending_is_refused(
    app: Convomem, fake_model: FakeOpenAIServer, database_url: str
) -> None:
    paused = await app.send("t", INTRODUCTION, review_memory=True)
    before = checkpoint_ids(database_url, "t")

    with pytest.raises(InvalidInput):
        await app.send("t", "another message")

    assert checkpoint_ids(database_url, "t") == before
    assert await app.pending_interrupts("t") == paused.interrupts
    assert len(fake_model.requests_of("respond")) == 1
    # Another thread of the same user is not blocked.
    assert (await app.send("other", "hello over here")).next_nodes == ()


async def test_invalid_review_answer_is_invalid_input(app: Convomem, database_url: str) -> None:
    paused = await app.send("t", INTRODUCTION, review_memory=True)
    with pytest.raises(InvalidInput):
        await finish(app.resume("t", 42, review_memory=True))
    assert await app.pending_interrupts("t") == paused.interrupts
    assert entity_rows(database_url) == []


async def test_thread_recovers_after_an_unusable_review_answer(app: Convomem, database_url: str) -> None:
    paused = await app.send("t", INTRODUCTION, review_memory=True)
    with pytest.raises(Exception):  # noqa: B017 - which error is test_invalid_review_answer_is_invalid_input's
        await finish(app.resume("t", [{"type": "PERSON", "value": ""}], review_memory=True))
    assert await app.pending_interrupts("t") == paused.interrupts

    ended = await finish(app.resume("t", "reject", review_memory=True))
    assert ended.next_nodes == ()
    assert await app.entities() == []


# ------------------------------------------------------------------------- static breakpoints


async def test_breakpoint_before_respond_pauses_and_resume_finishes(
    app: Convomem, fake_model: FakeOpenAIServer, database_url: str
) -> None:
    paused = await app.send("t", INTRODUCTION, interrupt_before=["respond"])

    assert paused.next_nodes == ("respond",)
    assert paused.reply is None
    assert paused.interrupts == ()
    assert fake_model.requests_of("respond") == []
    assert [m.type for m in (await app.state("t")).values["messages"]] == ["human"]
    assert entity_rows(database_url) == []

    ended = await finish(app.resume("t"))

    assert ended.next_nodes == ()
    assert ended.reply is not None
    assert ended.checkpoint_id == checkpoint_ids(database_url, "t")[-1]
    assert len(fake_model.requests_of("respond")) == 1
    assert [m.type for m in (await app.state("t")).values["messages"]] == ["human", "ai"]
    assert {e.value for e in await app.entities()} == PROPOSED


async def test_breakpoint_after_respond_pauses_before_memory(
    app: Convomem, fake_model: FakeOpenAIServer, database_url: str
) -> None:
    paused = await app.send("t", INTRODUCTION, interrupt_after=["respond"])
    assert set(paused.next_nodes) == {"extract_entities", "summarize"}
    assert len(fake_model.requests_of("respond")) == 1
    assert fake_model.requests_of("extract") == []
    assert entity_rows(database_url) == []

    ended = await finish(app.resume("t"))
    assert ended.next_nodes == ()
    assert len(fake_model.requests_of("respond")) == 1
    assert {e.value for e in await app.entities()} == PROPOSED


async def test_breakpoint_on_a_later_turn_reports_no_reply(app: Convomem) -> None:
    await app.send("t", "first turn")
    paused = await app.send("t", "second turn", interrupt_before=["respond"])
    assert paused.next_nodes == ("respond",)
    assert paused.reply is None


async def test_new_message_while_paused_at_a_breakpoint_supersedes_the_stopped_turn(
    app: Convomem, fake_model: FakeOpenAIServer, database_url: str
) -> None:
    """Only a pending interrupt (a review) refuses messages; a turn stopped at a breakpoint is superseded:
    the new message joins it and one reply answers both, on the same line of history."""
    await app.send("t", "I work at Acme.", interrupt_before=["respond"])
    before = checkpoint_ids(database_url, "t")
    assert fake_model.requests_of("respond") == []
    ended = await app.send("t", "another message")
    assert ended.next_nodes == () and ended.reply is not None
    humans = message_texts((await app.state("t")).values["messages"], "human")
    assert humans == ["I work at Acme.", "another message"]
    [request] = fake_model.requests_of("respond")
    assert message_texts(request["messages"], "user") == humans
    assert checkpoint_ids(database_url, "t")[: len(before)] == before
    assert await app.entities() != []  # the superseded message was extracted with the new one


# ----------------------------------------------------------------------------- nothing to resume


async def test_resume_on_a_finished_thread_raises(
    app: Convomem, fake_model: FakeOpenAIServer, database_url: str
) -> None:
    await app.send("t", INTRODUCTION)
    before = checkpoint_ids(database_url, "t")
    with pytest.raises(NothingToResume):
        await finish(app.resume("t"))
    with pytest.raises(NothingToResume):
        await finish(app.resume("t", "approve"))
    assert checkpoint_ids(database_url, "t") == before
    assert len(fake_model.requests_of("respond")) == 1


async def test_resume_on_an_unknown_thread_raises(app: Convomem, database_url: str) -> None:
    with pytest.raises(UnknownThread, match="No thread"):
        await finish(app.resume("never-used"))
    assert checkpoint_ids(database_url, "never-used") == []


async def test_resume_after_the_review_was_answered_raises(app: Convomem) -> None:
    await app.send("t", INTRODUCTION, review_memory=True)
    await finish(app.resume("t", "approve", review_memory=True))
    with pytest.raises(NothingToResume):
        await finish(app.resume("t", "approve", review_memory=True))
    assert {e.mentions for e in await app.entities()} == {1}
