"""Replies under a response schema: validated, the error sent back once, then ReplyNotValid."""

from __future__ import annotations

import jsonschema_rs
import pytest
from langchain_core.messages import HumanMessage, SystemMessage
from langchain_core.tools import tool
from langgraph.runtime import Runtime

from nodes.config import GraphConfig
from nodes.errors import ReplyNotValid
from nodes.reply_schema import reply_format, schema_error, schema_problem, schema_reply
from nodes.respond import make_respond
from nodes.state import Context
from tests.support.fakes import fake

SCHEMA = {
    "type": "object",
    "required": ["urgency"],
    "properties": {"urgency": {"type": "string", "enum": ["low", "high"]}},
    "additionalProperties": False,
}
VALIDATOR = jsonschema_rs.validator_for(SCHEMA)
PROMPT = [SystemMessage("triage"), HumanMessage("it broke")]


def test_errors_name_what_is_wrong_in_one_line() -> None:
    assert schema_error('{"urgency": "low"}', VALIDATOR) is None
    assert schema_error('```json\n{"urgency": "high"}\n```', VALIDATOR) is None  # a fenced reply is read
    assert schema_error("sure!", VALIDATOR) == "the reply is not JSON (Expecting value at character 0)"
    assert schema_error('{"urgency": "soon"}', VALIDATOR) == 'urgency: "soon" is not one of "low" or "high"'
    assert "required property" in str(schema_error("{}", VALIDATOR))
    assert schema_problem({"type": "nope"}) is not None and schema_problem(SCHEMA) is None


def test_the_request_format_for_openai_and_for_llama_cpp() -> None:
    assert reply_format(SCHEMA, "json_schema")["json_schema"]["schema"] == SCHEMA
    assert reply_format(SCHEMA, "json_object") == {"type": "json_object", "schema": SCHEMA}


async def test_a_matching_reply_is_kept_without_a_second_call() -> None:
    model = fake('{"urgency": "low"}')
    reply = await schema_reply(model, PROMPT, VALIDATOR)
    assert reply.content == '{"urgency": "low"}'
    assert len(model.prompts) == 1


async def test_a_reply_off_the_schema_gets_one_repair_with_the_validation_error() -> None:
    model = fake('{"urgency": "soon"}', '{"urgency": "high"}')
    reply = await schema_reply(model, PROMPT, VALIDATOR)
    assert reply.content == '{"urgency": "high"}'
    repair = model.prompts[1]
    assert repair[:2] == PROMPT and repair[2].content == '{"urgency": "soon"}'
    assert 'urgency: "soon" is not one of' in str(repair[3].content)


async def test_a_reply_still_off_the_schema_after_the_repair_is_a_clear_error() -> None:
    model = fake("not json", '{"urgency": 1}', '{"urgency": "low"}')
    with pytest.raises(
        ReplyNotValid, match=r"does not match the assistant's response schema after one repair"
    ):
        await schema_reply(model, PROMPT, VALIDATOR)
    assert len(model.prompts) == 2  # one repair, never more


async def test_an_answer_given_in_a_tool_round_is_held_to_the_schema_too() -> None:
    @tool
    def lookup(query: str) -> str:
        """Look something up."""
        return query

    model = fake("plain words", '{"urgency": "low"}')
    respond = make_respond(model, GraphConfig(tool_rounds=2), [lookup], response_schema=SCHEMA)
    update = await respond(
        {"messages": [HumanMessage("it broke", id="h1")]}, runtime=Runtime(context=Context())
    )
    assert [m.content for m in update["messages"]] == ['{"urgency": "low"}']
    assert "not JSON" in str(model.prompts[1][-1].content)
