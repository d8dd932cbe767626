"""Assistants on every path: a run naming `triage` finds its thread opened by the assistant's first
message, its reply JSON under the assistant's schema, and the thread goes on with `triage` when the next
message names none; an unknown assistant is refused with the same words everywhere, nothing written."""

from __future__ import annotations

import json

import httpx
import jsonschema_rs
import pytest

from graphs.assistants import SHIPPED_DIR, load_assistants
from tests.integration.support import rows, system_prompt
from tests.parity.drivers import Driver
from tests.parity.probe import Probe
from tests.parity.rig import Rig
from tests.parity.server_driver import GRAPH, ServerDriver, user_says
from tests.parity.support import assert_ok

TRIAGE = load_assistants(SHIPPED_DIR).get("triage")
UNKNOWN = "Unknown assistant 'nope': choose from default, recall, travel-planner, triage."


def respond_requests(rig: Rig, seen: int) -> list[dict[str, object]]:
    return [r for r in rig.model.requests[seen:] if r["kind"] == "respond"]


async def test_triage_opens_the_thread_and_replies_under_its_schema_then_the_thread_keeps_it(
    rig: Rig, driver: Driver, probe: Probe, user: str
) -> None:
    thread = await driver.new_thread()
    seen = len(rig.model.requests)
    assert_ok(await driver.send(thread, "My card was charged twice", user, assistant="triage"), "triage")
    view = await probe.view(thread)
    assert view.types == ["ai", "human", "ai"], view.types
    assert view.messages[0].text == TRIAGE.first_message
    assert TRIAGE.response_schema is not None
    jsonschema_rs.validate(TRIAGE.response_schema, json.loads(view.messages[2].text))
    (request,) = respond_requests(rig, seen)
    assert system_prompt(request).startswith(str(TRIAGE.instructions))
    assert request["response_format"]["json_schema"]["schema"] == TRIAGE.response_schema  # type: ignore[index]
    assert request["temperature"] == TRIAGE.temperature

    seen = len(rig.model.requests)
    assert_ok(await driver.send(thread, "It happened again today", user), "the next message")
    (request,) = respond_requests(rig, seen)
    assert system_prompt(request).startswith(str(TRIAGE.instructions))
    said = [entry.content for entry in await probe.transcript(thread)]  # the working set may have folded
    assert said[:2] == [TRIAGE.first_message, "My card was charged twice"], said
    assert said.count(str(TRIAGE.first_message)) == 1
    stamped = rows(
        probe.url,
        "SELECT DISTINCT metadata ->> 'convomem_assistant' FROM checkpoints "
        "WHERE thread_id = %s AND metadata ? 'convomem_user_id'",
        (thread,),
    )
    assert stamped == [("triage",)]


async def test_an_unknown_assistant_is_refused_with_the_same_words_and_nothing_written(
    rig: Rig, driver: Driver, probe: Probe, user: str
) -> None:
    thread = await driver.new_thread()
    seen = len(rig.model.requests)
    outcome = await driver.send(thread, "hello", user, assistant="nope")
    assert outcome.refused and outcome.message == UNKNOWN, outcome
    assert probe.rows(thread).checkpoints == ()
    assert respond_requests(rig, seen) == []


@pytest.mark.paths("server")
async def test_each_assistant_file_can_be_a_langgraph_assistant(
    rig: Rig, driver: ServerDriver, probe: Probe, user: str
) -> None:
    async with driver.client() as client:
        made = await client.assistants.create(graph_id=GRAPH, context={"assistant": "triage"}, name="triage")
        with pytest.raises(httpx.HTTPStatusError) as refused:
            await client.assistants.create(graph_id=GRAPH, context={"assistant": "nope"}, name="nope")
        assert refused.value.response.status_code == 422
        assert refused.value.response.json()["detail"] == UNKNOWN
        thread = str((await client.threads.create())["thread_id"])
        seen = len(rig.model.requests)
        run = await client.runs.create(
            thread, made["assistant_id"], input=user_says("Refund please"), context={"user_id": user}
        )
        assert_ok(await driver.finish(client, thread, str(run["run_id"])), "a run of the LangGraph assistant")
    (request,) = respond_requests(rig, seen)
    assert system_prompt(request).startswith(str(TRIAGE.instructions))
    assert (await probe.view(thread)).texts("ai")[0] == TRIAGE.first_message


async def test_a_reply_off_the_schema_after_the_repair_fails_the_turn_and_leaves_the_thread(
    rig: Rig, driver: Driver, probe: Probe, user: str
) -> None:
    thread = await driver.new_thread()
    assert_ok(await driver.send(thread, "My login fails", user, assistant="triage"), "the first turn")
    before = await probe.view(thread), probe.rows(thread)
    outcome = await driver.send(thread, "OFF-SCHEMA from now on", user)
    assert outcome.failed and outcome.one_line, outcome
    assert outcome.message.startswith(
        "The reply does not match the assistant's response schema after one repair"
    )
    assert (await probe.view(thread), probe.rows(thread)) == before
