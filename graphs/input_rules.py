"""The one set of rules a turn's input must pass, on every path, before anything is written."""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Literal

from langchain_core.messages import BaseMessage, HumanMessage
from langgraph.types import Command

from checkpoint.ids import validate_id, validate_user_id
from nodes.errors import InvalidInput
from nodes.state import Context

__all__ = [
    "CONTEXT_FIELDS",
    "USER_ROLES",
    "CheckedInput",
    "check_command",
    "check_context",
    "check_message_text",
    "check_state_update",
    "check_thread_id",
    "check_turn_input",
]

USER_ROLES = ("user", "human")
"""Roles a caller may send: a turn's input is the user's message; the graph writes every other role."""
CONTEXT_FIELDS = tuple(f.name for f in dataclasses.fields(Context))
InputKind = Literal["message", "continue", "resume"]


@dataclass(frozen=True)
class CheckedInput:
    """What a run's input asks for: a new user message, continuing a paused or replayed run, or an
    answer to an interrupt (`resume` holds the answer)."""

    kind: InputKind
    resume: Any = None


def check_thread_id(thread_id: object) -> str:
    if not isinstance(thread_id, str):
        raise InvalidInput("Invalid thread id: it must be a string.")
    return validate_id(thread_id)


def check_message_text(text: str, max_bytes: int) -> str:
    """Text a user may send: not blank, no NUL, valid UTF-8, at most `max_bytes` bytes."""
    if not text.strip():
        raise InvalidInput("Empty message: type something to send.")
    if "\x00" in text:
        raise InvalidInput("The message contains a NUL character (\\x00): remove it and send again.")
    try:
        size = len(text.encode("utf-8"))
    except UnicodeEncodeError as error:
        raise InvalidInput(
            f"The message is not valid Unicode text (character {error.start}): re-encode it as UTF-8."
        ) from None
    if size > max_bytes:
        raise InvalidInput(
            f"Message is {size} bytes, over the {max_bytes}-byte limit "
            "(CONVOMEM_MAX_MESSAGE_BYTES): shorten it or raise the limit."
        )
    return text


def _content_text(content: object) -> str:
    """A message's text: a string, or a list of text blocks (other kinds of content are refused)."""
    if isinstance(content, str):
        return content
    if isinstance(content, list):
        parts = []
        for block in content:
            if isinstance(block, str):
                parts.append(block)
            elif (
                isinstance(block, Mapping)
                and block.get("type") == "text"
                and isinstance(block.get("text"), str)
            ):
                parts.append(block["text"])
            else:
                raise InvalidInput("Only text content is accepted: send the message as a string.")
        return "".join(parts)
    raise InvalidInput("A message's `content` must be a string.")


def _check_one_message(message: object, max_bytes: int) -> None:
    if isinstance(message, str):
        check_message_text(message, max_bytes)
        return
    if isinstance(message, BaseMessage):
        if not isinstance(message, HumanMessage):
            raise InvalidInput(f"Only user messages can be sent, not {message.type!r} messages.")
        check_message_text(_content_text(message.content), max_bytes)
        return
    if not isinstance(message, Mapping):
        raise InvalidInput('A message is {"role": "user", "content": "..."}.')
    role = message.get("role", message.get("type"))
    if role not in USER_ROLES:
        raise InvalidInput(
            f'Unknown message role {str(role)[:40]!r}: send {{"role": "user", "content": "..."}} '
            "(the graph writes every other role itself)."
        )
    check_message_text(_content_text(message.get("content")), max_bytes)


def _check_messages(value: Mapping[Any, Any], max_bytes: int) -> None:
    """A state update a caller may send: exactly one user message under `messages`, nothing else."""
    extra = sorted(str(key) for key in value if key != "messages")
    if extra:
        raise InvalidInput(
            f"Unknown input keys {', '.join(extra)[:80]}: a turn's input is only `messages` "
            "(one user message)."
        )
    messages = value.get("messages")
    if isinstance(messages, list | tuple):
        if len(messages) != 1:
            raise InvalidInput(f"Send one user message per turn, not {len(messages)}.")
        messages = messages[0]
    _check_one_message(messages, max_bytes)


def check_command(command: Command[Any] | Mapping[str, Any]) -> CheckedInput:
    """A command may only answer an interrupt (`resume`); `goto` and `update` would let a caller hand a
    node any state at all."""
    if isinstance(command, Command):
        fields = {"resume": command.resume, "goto": command.goto, "update": command.update}
    else:
        fields = dict(command)
    if any(fields.get(name) not in (None, (), [], {}) for name in ("goto", "update", "graph")):
        raise InvalidInput("Commands may only carry `resume`, the answer to a pending interrupt.")
    if fields.get("resume") is None:
        raise InvalidInput("A command needs `resume`: the answer to the pending interrupt.")
    return CheckedInput("resume", fields["resume"])


def check_turn_input(value: object, max_bytes: int) -> CheckedInput:
    """Classify a run's input, refusing anything that is not one user message, a resume command, or
    None (continue a paused run, or replay from a checkpoint)."""
    if value is None:
        return CheckedInput("continue")
    if isinstance(value, Command):
        return check_command(value)
    if not isinstance(value, Mapping):
        raise InvalidInput('A turn\'s input is {"messages": [{"role": "user", "content": "..."}]}.')
    _check_messages(value, max_bytes)
    return CheckedInput("message")


def check_state_update(value: object, max_bytes: int) -> None:
    """An edit of a thread's state by a caller (a fork): the same rules as a new message."""
    if not isinstance(value, Mapping):
        raise InvalidInput('A state update is {"messages": [{"role": "user", "content": "..."}]}.')
    _check_messages(value, max_bytes)


def check_context(value: object, *, strict: bool = True) -> Context:
    """The run's context (`user_id`, `review_memory`, `assistant`), validated; unknown fields are refused when
    `strict`. LangGraph Server copies a run's `configurable` (thread id, headers) into its context when
    the request sent none, so those runs are checked with `strict=False`: unknown fields are ignored."""
    if value is None:
        return Context()
    if isinstance(value, Context):
        fields: Mapping[str, Any] = dataclasses.asdict(value)
    elif isinstance(value, Mapping):
        fields = value
    else:
        raise InvalidInput(f"The run's context must be an object with {', '.join(CONTEXT_FIELDS)}.")
    unknown = sorted(str(key) for key in fields if key not in CONTEXT_FIELDS)
    if unknown and strict:
        raise InvalidInput(
            f"Unknown context fields {', '.join(unknown)[:80]}: a run's context has only "
            f"{', '.join(CONTEXT_FIELDS)} (everything else is configured when the graph is built)."
        )
    user_id = fields.get("user_id")
    if user_id is not None:
        if not isinstance(user_id, str):
            raise InvalidInput("Invalid user id: it must be a string.")
        validate_user_id(user_id)
    review = fields.get("review_memory")
    if review is not None and not isinstance(review, bool):
        raise InvalidInput("`review_memory` must be true or false.")
    assistant = fields.get("assistant")
    if assistant is not None and not isinstance(assistant, str):
        raise InvalidInput("`assistant` must be a string: the name of an assistant file.")
    return Context(user_id=user_id, review_memory=review, assistant=assistant)
