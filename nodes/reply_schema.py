"""Replies under an assistant's response schema (JSON Schema): requested, validated, repaired once."""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Any, Literal

import jsonschema_rs
from langchain_core.messages import AIMessage, AnyMessage, HumanMessage
from langchain_core.runnables import Runnable

from nodes.errors import ReplyNotValid
from nodes.prompts import SCHEMA_REPAIR_REQUEST

__all__ = ["SchemaStyle", "reply_format", "schema_error", "schema_problem", "schema_reply"]

SchemaStyle = Literal["json_schema", "json_object"]
"""How the schema is sent: OpenAI's `json_schema` response format, or llama.cpp's `json_object` with a
`schema` (the embedded model's server refuses the former and constrains its grammar with the latter)."""


def schema_problem(schema: Mapping[str, Any]) -> str | None:
    """Why `schema` is not a JSON Schema the validator accepts (one line), or None."""
    try:
        jsonschema_rs.meta.validate(dict(schema))
    except jsonschema_rs.ValidationError as error:
        return error.message
    except Exception as error:  # an unresolvable $ref, an unknown draft
        return str(error).splitlines()[0]
    return None


def reply_format(schema: Mapping[str, Any], style: SchemaStyle) -> dict[str, Any]:
    """The chat request's `response_format` asking for a reply under `schema`."""
    if style == "json_object":
        return {"type": "json_object", "schema": dict(schema)}
    return {"type": "json_schema", "json_schema": {"name": "reply", "schema": dict(schema), "strict": False}}


def _json_text(text: str) -> str:
    """The reply without a Markdown code fence around it (small models add one)."""
    stripped = text.strip()
    if stripped.startswith("```") and stripped.endswith("```"):
        stripped = stripped[3:-3].removeprefix("json").strip()
    return stripped


def schema_error(text: str, validator: jsonschema_rs.Validator) -> str | None:
    """What is wrong with a reply under the schema (one line, as the model and the user read it), or None."""
    try:
        value = json.loads(_json_text(text))
    except json.JSONDecodeError as error:
        return f"the reply is not JSON ({error.msg} at character {error.pos})"
    for found in validator.iter_errors(value):
        where = "/".join(str(part) for part in found.instance_path)
        return f"{where}: {found.message}" if where else found.message
    return None


async def schema_reply(
    replier: Runnable[list[AnyMessage], Any],
    prompt: list[AnyMessage],
    validator: jsonschema_rs.Validator,
    reply: AIMessage | None = None,
) -> AIMessage:
    """The model's reply (`reply`, when it already came) when it matches the schema; else the validation
    error goes back to the model once, and a reply still not matching raises ReplyNotValid (the turn is
    undone like any failed reply)."""
    if reply is None:
        reply = await replier.ainvoke(prompt)
    error = schema_error(str(reply.text), validator)
    if error is None:
        return reply
    request = HumanMessage(content=SCHEMA_REPAIR_REQUEST.format(error=error))
    repaired = await replier.ainvoke([*prompt, reply, request])
    error = schema_error(str(repaired.text), validator)
    if error is None:
        return repaired  # type: ignore[no-any-return]
    raise ReplyNotValid(
        f"The reply does not match the assistant's response schema after one repair ({error[:200]}): "
        "nothing was saved; send the message again, or loosen the schema."
    )
