"""Assistants on real Postgres through the Python API: the thread remembers its assistant across chat,
resume, replay and fork; the first message opens a new thread; a reply off the schema is repaired once,
then refused with the thread as it was."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from graphs.api import Convomem, ReplyNotValid, open_convomem
from graphs.assistants import SHIPPED_DIR, load_assistants
from graphs.settings import Settings
from nodes.errors import ConfigError, InvalidInput
from tests.fake_openai import FakeOpenAIServer
from tests.integration.support import checkpoint_count, finish, rows, system_prompt

TRIAGE = load_assistants(SHIPPED_DIR).get("triage")
TRAVEL = load_assistants(SHIPPED_DIR).get("travel-planner")


def stamped_assistants(url: str, thread_id: str) -> set[str | None]:
    """The assistant every run of the thread stamped in its checkpoints' metadata."""
    found = rows(
        url,
        "SELECT DISTINCT metadata ->> 'convomem_assistant' FROM checkpoints "
        "WHERE thread_id = %s AND metadata ? 'convomem_user_id'",
        (thread_id,),
    )
    return {row[0] for row in found}


def last_respond_prompt(fake_model: FakeOpenAIServer) -> str:
    return system_prompt(fake_model.requests_of("respond")[-1])


async def test_a_new_thread_opens_with_the_first_message_and_replies_under_the_schema(
    app: Convomem, fake_model: FakeOpenAIServer, database_url: str
) -> None:
    assert await app.opening("t1", "triage") == TRIAGE.first_message
    assert await app.opening("t1") is None  # no assistant chosen: the settings', which has none
    ended = await finish(app.chat("t1", "My invoice is wrong", assistant="triage"))
    assert await app.opening("t1", "triage") is None
    reply = json.loads(str(ended.reply))
    assert set(reply) == {"category", "urgency", "summary"} and reply["category"] == "billing"
    messages = (await app.state("t1")).values["messages"]
    assert [(m.type, m.content) for m in messages[:2]] == [
        ("ai", TRIAGE.first_message),
        ("human", "My invoice is wrong"),
    ]
    request = fake_model.requests_of("respond")[-1]
    assert system_prompt(request).startswith(str(TRIAGE.instructions))
    assert request["temperature"] == 0.0
    assert request["response_format"]["json_schema"]["schema"] == TRIAGE.response_schema
    assert stamped_assistants(database_url, "t1") == {"triage"}
    await finish(app.chat("t1", "And it is urgent"))  # the first message is written once
    texts = [m.content for m in (await app.state("t1")).values["messages"]]
    assert texts.count(TRIAGE.first_message) == 1


async def test_the_thread_remembers_its_assistant_across_resume_replay_and_fork(
    app: Convomem, fake_model: FakeOpenAIServer, database_url: str
) -> None:
    await finish(app.chat("t2", "Plan Lisbon", assistant="travel-planner", interrupt_before=["respond"]))
    await finish(app.resume("t2"))
    assert last_respond_prompt(fake_model).startswith(str(TRAVEL.instructions))
    await finish(app.chat("t2", "Three days"))
    assert last_respond_prompt(fake_model).startswith(str(TRAVEL.instructions))
    history = await app.history("t2")
    before_second = next(c for c in history if "respond" in c.next_nodes)
    await finish(app.replay("t2", before_second.checkpoint_id))
    assert last_respond_prompt(fake_model).startswith(str(TRAVEL.instructions))
    await finish(app.fork("t2", before_second.checkpoint_id, "Four days instead"))
    assert last_respond_prompt(fake_model).startswith(str(TRAVEL.instructions))
    assert stamped_assistants(database_url, "t2") == {"travel-planner"}
    await finish(app.chat("t2", "Now triage this", assistant="default"))  # a run may switch it
    assert not last_respond_prompt(fake_model).startswith(str(TRAVEL.instructions))
    await finish(app.chat("t2", "again"))
    assert not last_respond_prompt(fake_model).startswith(str(TRAVEL.instructions))


async def test_a_reply_off_the_schema_is_repaired_once(app: Convomem, fake_model: FakeOpenAIServer) -> None:
    ended = await finish(app.chat("t3", "OFF-SCHEMA-ONCE please", assistant="triage"))
    assert set(json.loads(str(ended.reply))) == {"category", "urgency", "summary"}
    requests = fake_model.requests_of("respond")
    assert len(requests) == 2
    repair = requests[1]
    assert repair["messages"][-2] == {"role": "assistant", "content": "{}"}
    assert "required property" in repair["messages"][-1]["content"]


async def test_a_reply_still_off_the_schema_fails_the_turn_and_writes_nothing(
    app: Convomem, database_url: str
) -> None:
    with pytest.raises(
        ReplyNotValid, match="does not match the assistant's response schema after one repair"
    ):
        await finish(app.chat("t4", "OFF-SCHEMA now", assistant="triage"))
    assert checkpoint_count(database_url, "t4") == 0
    await finish(app.chat("t4", "My login fails", assistant="triage"))
    before = checkpoint_count(database_url, "t4")
    with pytest.raises(ReplyNotValid):
        await finish(app.chat("t4", "OFF-SCHEMA again"))
    assert checkpoint_count(database_url, "t4") == before
    assert [m.type for m in (await app.state("t4")).values["messages"]] == ["ai", "human", "ai"]


async def test_an_unknown_assistant_is_one_line_and_nothing_is_written(
    app: Convomem, database_url: str
) -> None:
    with pytest.raises(InvalidInput) as raised:
        await finish(app.chat("t5", "hi", assistant="nope"))
    known = "default, recall, travel-planner, triage"
    assert str(raised.value) == f"Unknown assistant 'nope': choose from {known}."
    assert checkpoint_count(database_url, "t5") == 0


async def test_the_assistant_chosen_at_open_is_the_default_of_new_threads(
    settings: Settings, fake_model: FakeOpenAIServer, tmp_path: Path
) -> None:
    async with open_convomem(settings, assistant="travel-planner") as app:
        ended = await finish(app.chat("t6", "hello"))
        assert ended.reply is not None
        assert last_respond_prompt(fake_model).startswith(str(TRAVEL.instructions))
        assert app.assistants.names() == ["default", "recall", "travel-planner", "triage"]
    (tmp_path / "bad.toml").write_text('name = "bad"\ntemperature = 9')
    with pytest.raises(ConfigError, match=r"bad\.toml: temperature: Input should be less than or equal to 2"):
        async with open_convomem(settings.model_copy(update={"assistants_dir": tmp_path})):
            pass


def offered_tools(request: dict[str, object]) -> list[str]:
    return [tool["function"]["name"] for tool in request.get("tools") or []]  # type: ignore[attr-defined]


async def test_each_assistant_offers_its_own_tools_and_runs_a_module_tool(
    settings: Settings, fake_model: FakeOpenAIServer, tmp_path: Path
) -> None:
    for shipped in SHIPPED_DIR.glob("*.toml"):
        (tmp_path / shipped.name).write_text(shipped.read_text())
    (tmp_path / "forecaster.toml").write_text(
        'name = "forecaster"\ntools = ["tests.support.assistant_tools:weather"]'
    )
    async with open_convomem(settings.model_copy(update={"assistants_dir": tmp_path})) as app:
        await finish(app.chat("t8", "Plan Rome", assistant="travel-planner"))
        assert offered_tools(fake_model.requests_of("respond")[-1]) == ["search_conversations", "remember"]
        await finish(app.chat("t9", "hello"))  # no assistant: the process's built-in tools (CONVOMEM_TOOLS)
        assert offered_tools(fake_model.requests_of("respond")[-1]) == [
            "search_conversations",
            "recall_entity",
            "remember",
            "forget",
        ]
        ended = await finish(
            app.chat("t10", 'Weather? [call weather {"city": "Oslo"}]', assistant="forecaster")
        )
        assert ended.reply == "Tool said: sunny in Oslo"
        assert offered_tools(fake_model.requests_of("respond")[-1]) == ["weather"]
