"""History, replay and fork on real checkpoints; re-running extraction never counts a message twice."""

from __future__ import annotations

import uuid
from typing import Any

import pytest

from graphs.api import CheckpointInfo, Convomem
from nodes.errors import InvalidInput, UnknownCheckpoint, UnknownThread
from nodes.prompts import MEMORY_HEADER
from tests.fake_openai import FakeOpenAIServer
from tests.integration.support import checkpoint_ids, finish, message_texts, rows, system_prompt

FIRST = "I work at Acme with Zelda."
SECOND = "Later I moved to Lisbon."
FORKED = "Actually I moved to Porto."

#: One turn, newest first: (step, source, nodes that produced it, nodes due next).
ONE_TURN = [
    (4, "loop", {"reduce_history"}, set()),
    (3, "loop", {"extract_entities", "summarize"}, {"reduce_history"}),
    (2, "loop", {"respond"}, {"extract_entities", "summarize"}),
    (1, "loop", {"load_memory"}, {"respond"}),
    (0, "loop", {"__start__"}, {"load_memory"}),
    (-1, "input", set(), {"__start__"}),
]


def shape(history: list[CheckpointInfo]) -> list[tuple[int, str, set[str], set[str]]]:
    return [(c.step, c.source, set(c.ran), set(c.next_nodes)) for c in history]


def due(history: list[CheckpointInfo], node: str, *, turn: int = 0) -> CheckpointInfo:
    """The `turn`-th oldest checkpoint whose next nodes include `node`."""
    return [c for c in reversed(history) if node in c.next_nodes][turn]


def entity_state(database_url: str) -> list[tuple[str, dict[str, Any]]]:
    return [
        (key, value)
        for key, value in rows(
            database_url,
            "SELECT key, value FROM store WHERE prefix = 'convomem.users.default.entities' ORDER BY key",
        )
    ]


async def ancestors(app: Convomem, thread_id: str) -> list[str]:
    """Checkpoint ids from the head back to the root, following parent links (the current branch)."""
    chain: list[str] = []
    config: Any = app.config(thread_id)
    while config is not None:
        snapshot = await app.graph.aget_state(config)
        chain.append(snapshot.config["configurable"]["checkpoint_id"])
        config = snapshot.parent_config
    return chain


# ------------------------------------------------------------------------------------ history


async def test_history_lists_checkpoints_with_steps_and_nodes(app: Convomem, database_url: str) -> None:
    ended = await app.send("t", FIRST)
    history = await app.history("t")

    assert shape(history) == ONE_TURN
    assert history[0].checkpoint_id == ended.checkpoint_id
    assert [c.checkpoint_id for c in history] == checkpoint_ids(database_url, "t")[::-1]
    assert [c.messages for c in history] == [2, 2, 2, 1, 1, 0]
    assert all(c.created_at for c in history)

    first_turn = history
    await app.send("t", SECOND)
    history = await app.history("t")
    assert shape(history[:6]) == [(s + 6, src, ran, nxt) for s, src, ran, nxt in ONE_TURN]
    assert history[6:] == first_turn
    assert [c.checkpoint_id for c in await app.history("t", limit=3)] == [
        c.checkpoint_id for c in history[:3]
    ]
    assert (await app.history("t", limit=3))[-1].ran == tuple(history[2].ran)


async def test_history_of_an_unknown_thread_is_refused(app: Convomem) -> None:
    """A typo in a thread id is an error, not an empty history (the CLI exits non-zero on it)."""
    with pytest.raises(UnknownThread, match="never-used"):
        await app.history("never-used")


# ------------------------------------------------------------------------------------- replay


async def test_replay_reruns_from_an_earlier_checkpoint(
    app: Convomem, fake_model: FakeOpenAIServer, database_url: str
) -> None:
    first_end = await app.send("t", FIRST)
    old = await app.history("t")
    before_respond = due(old, "respond")
    old_ai = (await app.state("t")).values["messages"][-1]

    ended = await finish(app.replay("t", before_respond.checkpoint_id))

    assert ended.next_nodes == ()
    assert len(fake_model.requests_of("respond")) == 2
    assert message_texts(fake_model.requests_of("respond")[-1]["messages"], "user") == [FIRST]
    new = await app.history("t")
    assert len(new) > len(old)
    assert {c.checkpoint_id for c in old} <= {c.checkpoint_id for c in new}
    assert new[0].checkpoint_id == ended.checkpoint_id != first_end.checkpoint_id
    messages = (await app.state("t")).values["messages"]
    assert [m.type for m in messages] == ["human", "ai"]
    assert messages[-1].id != old_ai.id, "the replayed branch has its own reply"
    chain = await ancestors(app, "t")
    assert before_respond.checkpoint_id in chain
    assert first_end.checkpoint_id not in chain
    # The old branch is still reachable as it was.
    old_branch = await app.graph.aget_state(app.config("t", first_end.checkpoint_id))
    assert [m.id for m in old_branch.values["messages"]][-1] == old_ai.id


# --------------------------------------------------------------------------------------- fork


async def test_fork_branches_with_a_different_message(
    app: Convomem, fake_model: FakeOpenAIServer, database_url: str
) -> None:
    first_end = await app.send("t", FIRST)
    second_end = await app.send("t", SECOND)
    assert first_end.checkpoint_id is not None
    old_ids = set(checkpoint_ids(database_url, "t"))

    ended = await finish(app.fork("t", first_end.checkpoint_id, FORKED))

    assert ended.next_nodes == ()
    humans = message_texts((await app.state("t")).values["messages"], "human")
    assert humans == [FIRST, FORKED]
    assert SECOND not in humans
    prompt = fake_model.requests_of("respond")[-1]["messages"]
    assert message_texts(prompt, "user") == [FIRST, FORKED]
    assert old_ids < set(checkpoint_ids(database_url, "t"))
    chain = await ancestors(app, "t")
    assert first_end.checkpoint_id in chain
    assert second_end.checkpoint_id not in chain
    original = await app.graph.aget_state(app.config("t", second_end.checkpoint_id))
    assert message_texts(original.values["messages"], "human") == [FIRST, SECOND]
    assert "update" in {c.source for c in await app.history("t")}


async def test_fork_from_the_middle_of_a_turn(
    app: Convomem, fake_model: FakeOpenAIServer, database_url: str
) -> None:
    """Fork at the checkpoint before respond: the branch has both human messages, then one reply."""
    await app.send("t", FIRST)
    before_respond = due(await app.history("t"), "respond")
    await finish(app.fork("t", before_respond.checkpoint_id, FORKED))
    messages = (await app.state("t")).values["messages"]
    assert [m.type for m in messages][-1] == "ai"
    assert message_texts(messages, "human") == [FIRST, FORKED]


# ------------------------------------------------------------------------- unknown checkpoints


@pytest.mark.parametrize(
    "checkpoint_id",
    [
        str(uuid.uuid4()),
        str(uuid.uuid1()),
        "not-a-checkpoint",
        "",
        "1f1e56ec-64e8-6171-8005",
        "'; DROP TABLE checkpoints; --",
    ],
    ids=["uuid4", "uuid1", "word", "empty", "truncated", "sql"],
)
async def test_unknown_checkpoint_is_refused(
    app: Convomem, fake_model: FakeOpenAIServer, database_url: str, checkpoint_id: str
) -> None:
    await app.send("t", FIRST)
    before = checkpoint_ids(database_url, "t")
    with pytest.raises(UnknownCheckpoint):
        await finish(app.replay("t", checkpoint_id))
    with pytest.raises(UnknownCheckpoint):
        await finish(app.fork("t", checkpoint_id, FORKED))
    assert checkpoint_ids(database_url, "t") == before
    assert len(fake_model.requests_of("respond")) == 1


async def test_checkpoint_of_another_thread_is_refused(
    app: Convomem, fake_model: FakeOpenAIServer, database_url: str
) -> None:
    await app.send("mine", FIRST)
    theirs = await app.send("theirs", SECOND)
    foreign = [c.checkpoint_id for c in await app.history("theirs")]
    before = checkpoint_ids(database_url, "mine")

    for checkpoint_id in (theirs.checkpoint_id, foreign[-1], foreign[2]):
        assert checkpoint_id is not None
        with pytest.raises(UnknownCheckpoint):
            await finish(app.replay("mine", checkpoint_id))
        with pytest.raises(UnknownCheckpoint):
            await finish(app.fork("mine", checkpoint_id, FORKED))

    assert checkpoint_ids(database_url, "mine") == before
    assert checkpoint_ids(database_url, "theirs") == foreign[::-1]
    assert len(fake_model.requests_of("respond")) == 2


async def test_replay_and_fork_on_an_unknown_thread_are_refused(app: Convomem, database_url: str) -> None:
    with pytest.raises(UnknownThread):
        await finish(app.replay("never-used", str(uuid.uuid4())))
    with pytest.raises(UnknownThread):
        await finish(app.fork("never-used", str(uuid.uuid4()), FORKED))
    assert checkpoint_ids(database_url, "never-used") == []


async def test_replay_and_fork_check_their_input_first(app: Convomem, database_url: str) -> None:
    ended = await app.send("t", FIRST)
    assert ended.checkpoint_id is not None
    before = checkpoint_ids(database_url, "t")
    with pytest.raises(InvalidInput):
        await finish(app.replay("../t", ended.checkpoint_id))
    with pytest.raises(InvalidInput):
        await finish(app.fork("t", ended.checkpoint_id, "   "))
    with pytest.raises(InvalidInput):
        await finish(app.fork("t", ended.checkpoint_id, FORKED, user_id="a b"))
    assert checkpoint_ids(database_url, "t") == before


# --------------------------------------------------------------------------------- idempotency


async def test_replaying_extraction_counts_the_message_once(
    app: Convomem, fake_model: FakeOpenAIServer, database_url: str
) -> None:
    await app.send("t", FIRST)
    remembered = entity_state(database_url)
    assert [key for key, _ in remembered] == ["ORG:acme", "OTHER:zelda"]
    before_extract = due(await app.history("t"), "extract_entities")

    await finish(app.replay("t", before_extract.checkpoint_id))

    assert entity_state(database_url) == remembered
    assert len(fake_model.requests_of("extract")) == 1, "the per-message marker skips the model call"
    assert len(fake_model.requests_of("respond")) == 1, "replay started after respond"
    assert {e.mentions for e in await app.entities()} == {1}


async def test_re_extracting_without_the_marker_counts_the_message_once(
    app: Convomem, fake_model: FakeOpenAIServer, database_url: str
) -> None:
    """A crash between the entity upserts and the marker: the model is asked again, nothing doubles."""
    await app.send("t", FIRST)
    remembered = entity_state(database_url)
    before_extract = due(await app.history("t"), "extract_entities")
    rows(database_url, "DELETE FROM store WHERE prefix = 'convomem.users.default.extracted' RETURNING key")

    await finish(app.replay("t", before_extract.checkpoint_id))

    assert len(fake_model.requests_of("extract")) == 2
    assert entity_state(database_url) == remembered
    records = await app.entities()
    assert {e.mentions for e in records} == {1}
    assert all(len(e.source_message_ids) == 1 for e in records)
    markers = rows(database_url, "SELECT value FROM store WHERE prefix = 'convomem.users.default.extracted'")
    assert [m[0]["stored"] for m in markers] == [0]


async def test_replaying_a_whole_turn_counts_its_message_once(
    app: Convomem, fake_model: FakeOpenAIServer, database_url: str
) -> None:
    await app.send("t", FIRST)
    await app.send("t", "I still see Zelda often.")
    remembered = entity_state(database_url)
    mentions = {(e.type, e.value): e.mentions for e in await app.entities()}
    assert mentions == {("ORG", "Acme"): 1, ("OTHER", "Zelda"): 2}
    turn_start = due(await app.history("t"), "__start__", turn=1)

    await finish(app.replay("t", turn_start.checkpoint_id))
    await finish(app.replay("t", turn_start.checkpoint_id))

    assert entity_state(database_url) == remembered
    assert {(e.type, e.value): e.mentions for e in await app.entities()} == mentions
    assert len(fake_model.requests_of("respond")) == 4
    assert len(fake_model.requests_of("extract")) == 2


# ------------------------------------------------------------------- replay/fork keep the user


@pytest.mark.parametrize("how", ["replay", "fork"])
async def test_replay_and_fork_use_the_threads_user(
    app: Convomem, fake_model: FakeOpenAIServer, how: str
) -> None:
    await app.send("t", "I work at Acme now.", user_id="u1")
    question = "what do you know about my job?"
    await app.send("t", question, user_id="u1")
    assert "Acme" in system_prompt(fake_model.requests_of("respond")[-1])
    history = await app.history("t")

    if how == "replay":
        await finish(app.replay("t", due(history, "load_memory", turn=1).checkpoint_id))
    else:
        await finish(app.fork("t", history[0].checkpoint_id, question))

    prompt = system_prompt(fake_model.requests_of("respond")[-1])
    assert MEMORY_HEADER in prompt
    assert "Acme" in prompt


async def test_history_ran_follows_the_parent_checkpoint(app: Convomem) -> None:
    await app.send("t", FIRST)
    start = due(await app.history("t"), "load_memory")
    await app.send("t", SECOND, interrupt_before=["respond"])  # head is paused: next == ("respond",)
    await finish(app.replay("t", start.checkpoint_id))

    history = await app.history("t")
    snapshots = {
        s.config["configurable"]["checkpoint_id"]: s
        async for s in app.graph.aget_state_history(app.config("t"))
    }
    for info in history:
        snapshot = snapshots[info.checkpoint_id]
        if info.source != "loop":
            assert info.ran == (), info
        else:
            assert snapshot.parent_config is not None
            parent_id = snapshot.parent_config["configurable"]["checkpoint_id"]
            assert set(info.ran) == set(snapshots[parent_id].next), info
