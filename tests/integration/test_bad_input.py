"""Bad input and broken dependencies: refused or reported before (or instead of) touching the thread."""

from __future__ import annotations

import time
from collections.abc import Awaitable, Callable, Sequence

import pytest

from graphs.api import Convomem, open_convomem
from graphs.settings import Settings
from nodes.errors import DatabaseUnavailable, InvalidInput, ModelUnavailable
from tests.fake_openai import FakeOpenAIServer
from tests.integration.support import checkpoint_count, checkpoint_ids, finish, message_texts, rows

GOOD = "I work at Acme."
BAD_ANY_IDS = ["a" * 129, "a b", "x;DROP", "../x", "-x", "x/y", "x'--", "ü", "a\x00b", "tab\there", "x\n"]
BAD_IDS = [*BAD_ANY_IDS, ""]  # an empty user id means "the settings' user"
BAD_USER_IDS = [*BAD_ANY_IDS, "ann.b"]  # a user id labels store namespaces, which refuse dots


def all_checkpoints(database_url: str) -> int:
    return int(rows(database_url, "SELECT count(*) FROM checkpoints")[0][0])


def pending_writes(database_url: str, thread_id: str) -> list[tuple[object, ...]]:
    return rows(
        database_url,
        "SELECT checkpoint_id, task_id, idx FROM checkpoint_writes WHERE thread_id = %s ORDER BY 1, 2, 3",
        (thread_id,),
    )


def store_rows(database_url: str) -> int:
    return int(rows(database_url, "SELECT count(*) FROM store")[0][0])


@pytest.fixture
async def one_turn(app: Convomem, database_url: str) -> list[str]:
    """Thread "t" after one successful turn; its checkpoint ids."""
    ended = await app.send("t", GOOD)
    assert ended.next_nodes == ()
    return checkpoint_ids(database_url, "t")


# ------------------------------------------------------------------------------------ messages


@pytest.mark.parametrize(
    "text", ["", " ", "   \n\t  ", "\u3000"], ids=["empty", "space", "blank", "ideographic"]
)
async def test_empty_message_is_refused(
    app: Convomem, fake_model: FakeOpenAIServer, database_url: str, one_turn: list[str], text: str
) -> None:
    with pytest.raises(InvalidInput):
        await app.send("t", text)
    with pytest.raises(InvalidInput):
        await app.send("fresh", text)
    assert checkpoint_ids(database_url, "t") == one_turn
    assert checkpoint_count(database_url, "fresh") == 0
    assert len(fake_model.requests) == 2  # the first turn's respond + extract


async def test_message_over_the_byte_limit_is_refused(
    settings: Settings, fake_model: FakeOpenAIServer, database_url: str
) -> None:
    async with open_convomem(settings.model_copy(update={"max_message_bytes": 64})) as app:
        await app.send("t", "a" * 64)  # exactly at the limit
        before = checkpoint_ids(database_url, "t")
        for text in ("a" * 65, "é" * 33, "🙂" * 17):  # 65, 66, 68 bytes; at most 33 characters
            with pytest.raises(InvalidInput, match="byte"):
                await app.send("t", text)
        assert checkpoint_ids(database_url, "t") == before
        assert message_texts((await app.state("t")).values["messages"], "human") == ["a" * 64]
        assert len(fake_model.requests_of("respond")) == 1


async def test_default_byte_limit_is_enforced(app: Convomem, database_url: str, one_turn: list[str]) -> None:
    with pytest.raises(InvalidInput):
        await app.send("t", "x" * (app.settings.max_message_bytes + 1))
    assert checkpoint_ids(database_url, "t") == one_turn


async def test_message_with_a_nul_character_is_refused(app: Convomem, database_url: str) -> None:
    with pytest.raises(InvalidInput):
        await app.send("t", "I work at Acme\x00Corp today.")
    assert checkpoint_count(database_url, "t") == 0


async def test_message_with_a_lone_surrogate_is_refused(app: Convomem, database_url: str) -> None:
    with pytest.raises(InvalidInput):
        await app.send("t", "I work at Acme \ud800 today.")
    assert checkpoint_count(database_url, "t") == 0


async def test_non_ascii_message_round_trips(app: Convomem, fake_model: FakeOpenAIServer) -> None:
    text = "Je travaille à Zürich — 東京 too 🙂, with O'Brien; DROP TABLE checkpoints; --"
    await app.send("t", text)
    assert message_texts((await app.state("t")).values["messages"], "human") == [text]
    assert message_texts(fake_model.requests_of("respond")[-1]["messages"], "user") == [text]


# ------------------------------------------------------------------------------ thread/user ids


async def test_bad_thread_ids_are_refused_everywhere(
    app: Convomem, fake_model: FakeOpenAIServer, database_url: str, one_turn: list[str]
) -> None:
    total = all_checkpoints(database_url)
    calls: dict[str, Callable[[str], Awaitable[object]]] = {
        "send": lambda bad: app.send(bad, GOOD),
        "resume": lambda bad: finish(app.resume(bad)),
        "replay": lambda bad: finish(app.replay(bad, one_turn[0])),
        "fork": lambda bad: finish(app.fork(bad, one_turn[0], GOOD)),
        "state": lambda bad: app.state(bad),
        "history": lambda bad: app.history(bad),
    }
    assert await accepted_calls(calls, BAD_IDS) == []
    assert all_checkpoints(database_url) == total
    assert len(fake_model.requests_of("respond")) == 1


async def accepted_calls(
    calls: dict[str, Callable[[str], Awaitable[object]]], bad_values: Sequence[str]
) -> list[tuple[str, str]]:
    """(call, value) pairs that did NOT raise InvalidInput: every one of them is a bug."""
    accepted = []
    for bad in bad_values:
        for name, call in calls.items():
            try:
                await call(bad)
            except InvalidInput:
                continue
            accepted.append((name, bad))
    return accepted


async def test_bad_user_ids_are_refused_everywhere(
    app: Convomem, fake_model: FakeOpenAIServer, database_url: str, one_turn: list[str]
) -> None:
    stored = store_rows(database_url)
    calls: dict[str, Callable[[str], Awaitable[object]]] = {
        "send": lambda bad: app.send("t", GOOD, user_id=bad),
        "send-new-thread": lambda bad: app.send("fresh", GOOD, user_id=bad),
        "review": lambda bad: app.send("t", GOOD, user_id=bad, review_memory=True),
        "replay": lambda bad: finish(app.replay("t", one_turn[0], user_id=bad)),
        "fork": lambda bad: finish(app.fork("t", one_turn[0], GOOD, user_id=bad)),
        "entities": lambda bad: app.entities(bad),
        "stats": lambda bad: app.stats(bad),
        "search": lambda bad: app.search("anything", user_id=bad),
        "forget": lambda bad: app.forget(bad),
    }
    assert await accepted_calls(calls, BAD_USER_IDS) == []
    assert checkpoint_ids(database_url, "t") == one_turn
    assert checkpoint_count(database_url, "fresh") == 0
    assert store_rows(database_url) == stored
    assert len(fake_model.requests_of("respond")) == 1


async def test_longest_allowed_ids_work(app: Convomem, database_url: str) -> None:
    thread, user = "t" * 128, "u" * 128
    ended = await app.send(thread, GOOD, user_id=user)
    assert ended.next_nodes == ()
    assert checkpoint_count(database_url, thread) == len(await app.history(thread))
    assert [e.value for e in await app.entities(user)] == ["Acme"]
    assert thread in {t.thread_id for t in await app.threads()}


async def test_settings_user_id_is_validated_too(
    settings: Settings, fake_model: FakeOpenAIServer, database_url: str
) -> None:
    async with open_convomem(settings.model_copy(update={"user_id": "../etc"})) as app:
        with pytest.raises(InvalidInput):
            await app.send("t", GOOD)
        with pytest.raises(InvalidInput):
            await app.entities()
    assert checkpoint_count(database_url, "t") == 0
    assert fake_model.requests == []


# ------------------------------------------------------------------------------------ database


async def test_unreachable_database_raises_database_unavailable(settings: Settings) -> None:
    unreachable = settings.model_copy(update={"database_url": "postgresql://u:s3cret-pw@127.0.0.1:1/x"})
    started = time.monotonic()
    with pytest.raises(DatabaseUnavailable) as raised:
        async with open_convomem(unreachable):
            pytest.fail("open_convomem yielded without a database")
    assert time.monotonic() - started < 30
    assert "s3cret-pw" not in str(raised.value)
    assert "127.0.0.1:1" in str(raised.value)


# --------------------------------------------------------------------------------------- model


@pytest.mark.parametrize("how", ["down", "http-500", "http-503"])
async def test_model_unavailable_leaves_the_thread_as_it_was(
    app: Convomem, fake_model: FakeOpenAIServer, database_url: str, one_turn: list[str], how: str
) -> None:
    state_before = await app.state("t")
    writes_before = pending_writes(database_url, "t")
    attempts = app.settings.model_retries
    if how == "down":
        fake_model.down = True
    else:
        fake_model.fail_next("respond", attempts, status=int(how.removeprefix("http-")))

    with pytest.raises(ModelUnavailable):
        await app.send("t", "this message never gets an answer")

    assert checkpoint_ids(database_url, "t") == one_turn
    assert pending_writes(database_url, "t") == writes_before
    state = await app.state("t")
    assert state.config == state_before.config
    assert [m.id for m in state.values["messages"]] == [m.id for m in state_before.values["messages"]]
    assert len(fake_model.requests_of("respond")) == 1 + attempts, "retried up to model_retries"

    # Once the model is back the thread carries on as if the failed turn never happened.
    fake_model.down = False
    await app.send("t", "back again")
    humans = message_texts((await app.state("t")).values["messages"], "human")
    assert humans == [GOOD, "back again"]


async def test_failed_first_turn_leaves_no_thread(
    app: Convomem, fake_model: FakeOpenAIServer, database_url: str
) -> None:
    fake_model.down = True
    with pytest.raises(ModelUnavailable):
        await app.send("fresh", GOOD)
    assert checkpoint_count(database_url, "fresh") == 0
    assert rows(database_url, "SELECT count(*) FROM checkpoint_writes WHERE thread_id = 'fresh'") == [(0,)]
    assert await app.threads() == []
    assert (await app.state("fresh")).values == {}


async def test_extraction_failure_after_the_reply_keeps_the_turn_and_writes_no_memory(
    app: Convomem, fake_model: FakeOpenAIServer, database_url: str, one_turn: list[str]
) -> None:
    """Memory work never fails a turn the user already saw: extraction retries, then records its failure."""
    entities_before = rows(
        database_url, "SELECT key, value FROM store WHERE prefix LIKE %s ORDER BY 1", ("%.entities",)
    )
    fake_model.fail_next("extract", app.settings.model_retries)
    end = await app.send("t", "I moved to Lisbon.")
    assert end.reply is not None and not end.next_nodes
    assert (await app.state("t")).values["extraction"]["error"].startswith("model failed")
    assert len(fake_model.requests_of("extract")) == 1 + app.settings.model_retries
    assert checkpoint_ids(database_url, "t")[: len(one_turn)] == one_turn
    orphans = rows(
        database_url,
        "SELECT count(*) FROM checkpoint_writes w WHERE NOT EXISTS (SELECT 1 FROM checkpoints c "
        "WHERE c.thread_id = w.thread_id AND c.checkpoint_ns = w.checkpoint_ns "
        "AND c.checkpoint_id = w.checkpoint_id)",
    )
    assert orphans == [(0,)]
    entities_after = rows(
        database_url, "SELECT key, value FROM store WHERE prefix LIKE %s ORDER BY 1", ("%.entities",)
    )
    assert entities_after == entities_before


async def test_transient_model_failure_is_retried(
    app: Convomem, fake_model: FakeOpenAIServer, database_url: str
) -> None:
    fake_model.fail_next("respond", 1)
    ended = await app.send("t", GOOD)
    assert ended.next_nodes == ()
    assert ended.reply is not None
    assert len(fake_model.requests_of("respond")) == 2
    assert [m.type for m in (await app.state("t")).values["messages"]] == ["human", "ai"]
    assert [e.value for e in await app.entities()] == ["Acme"]


async def test_client_error_is_not_retried(
    app: Convomem, fake_model: FakeOpenAIServer, database_url: str
) -> None:
    fake_model.fail_next("respond", 1, status=400)
    with pytest.raises(ModelUnavailable):
        await app.send("t", GOOD)
    assert len(fake_model.requests_of("respond")) == 1
    assert checkpoint_count(database_url, "t") == 0


async def test_malformed_extraction_is_repaired_once(
    app: Convomem, fake_model: FakeOpenAIServer, database_url: str
) -> None:
    fake_model.malformed_extractions = 1
    await app.send("t", GOOD)
    assert len(fake_model.requests_of("extract")) == 2
    repair = fake_model.requests_of("extract")[-1]["messages"]
    assert GOOD in message_texts(repair, "user")[-1], "the repair still asks about the user's message"
    assert [e.value for e in await app.entities()] == ["Acme"]


async def test_extraction_that_stays_malformed_still_completes_the_turn(
    app: Convomem, fake_model: FakeOpenAIServer, database_url: str
) -> None:
    fake_model.malformed_extractions = 2
    ended = await app.send("t", GOOD)
    assert ended.next_nodes == ()
    assert len(fake_model.requests_of("extract")) == 2
    assert await app.entities() == []
    [(marker,)] = rows(
        database_url, "SELECT value FROM store WHERE prefix = 'convomem.users.default.extracted'"
    )
    assert marker["stored"] == 0
    assert marker["error"]
    outcome = (await app.state("t")).values["extraction"]
    assert {key: outcome[key] for key in marker} == marker


async def test_failed_summary_keeps_the_turn_and_folds_on_a_later_turn(
    settings: Settings, fake_model: FakeOpenAIServer, database_url: str
) -> None:
    """A summarize failure costs nothing: the turn completes, entities are stored once, nothing folds."""
    async with open_convomem(settings.model_copy(update={"working_set_tokens": 64})) as app:
        await app.send("t", "Hello there, this opening message is long enough to need a summary soon.")
        fake_model.fail_next("summarize", 1 + app.settings.model_retries)
        end = await app.send("t", "I work at Acme these days.")
        assert end.reply is not None and not end.next_nodes
        assert [(e.value, e.mentions) for e in await app.entities()] == [("Acme", 1)]
        assert "summary" not in (await app.state("t")).values
        await app.send("t", "And I still do.")
        assert (await app.state("t")).values.get("summary")
