"""The web console's JSON API (/console/api/...): the Python API's calls, behind the API's identity rules.

Every handler acts through one Convomem (graphs.api), so a console edit obeys the same rules as the CLI's;
a refusal answers the CLI's one line with its 4xx. With tokens a user reaches only their own threads and
memory: another user's thread answers 404, exactly as an unknown one does.
"""

from __future__ import annotations

import json
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import asdict, is_dataclass
from typing import Any

from langchain_core.messages import BaseMessage
from langgraph_sdk import Auth
from pydantic import BaseModel
from pydantic_core import to_jsonable_python
from starlette.requests import Request
from starlette.responses import JSONResponse, Response, StreamingResponse
from starlette.routing import Route

from graphs.api import Convomem
from graphs.console_guard import (
    CONSOLE_API,
    SECURITY_HEADERS,
    ConsoleUser,
    auth_refusal_response,
    console_user,
)
from graphs.events import TurnEvent
from graphs.http_errors import status_of
from graphs.settings import Settings
from graphs.thread_admin import read_export
from nodes.errors import ConvomemError, InvalidInput, UnknownThread
from nodes.memory import ENTITY_TYPES

__all__ = ["ConvomemSource", "console_api_routes"]

ConvomemSource = Callable[[], Awaitable[Convomem]]
Handler = Callable[[Request, Convomem, ConsoleUser], Awaitable[Any]]

HISTORY_LIMIT = 200
"""Checkpoints the timeline draws (newest first)."""


class Forbidden(Exception):
    """A confined user named another user's data."""


def _json(data: Any, status: int = 200, headers: dict[str, str] | None = None) -> JSONResponse:
    return JSONResponse(
        to_jsonable_python(data), status_code=status, headers={**SECURITY_HEADERS, **(headers or {})}
    )


def _plain(value: Any) -> Any:
    """Dataclasses, pydantic models and messages as JSON-ready values."""
    if isinstance(value, BaseMessage):
        return _message(value)
    if isinstance(value, BaseModel):
        return value.model_dump(mode="json")
    if is_dataclass(value) and not isinstance(value, type):
        return {key: _plain(getattr(value, key)) for key in asdict(value)}
    if isinstance(value, list | tuple):
        return [_plain(item) for item in value]
    if isinstance(value, dict):
        return {key: _plain(item) for key, item in value.items()}
    return value


def _message(message: BaseMessage) -> dict[str, Any]:
    content = message.content if isinstance(message.content, str) else message.text()
    calls = [{"name": c["name"], "args": c["args"]} for c in getattr(message, "tool_calls", None) or []]
    return {"id": message.id, "role": message.type, "content": content, "tool_calls": calls}


def _refusal(error: ConvomemError) -> JSONResponse:
    status = 404 if isinstance(error, UnknownThread) else status_of(error)
    return _json({"detail": str(error)}, status)


def _endpoint(
    source: ConvomemSource, settings: Settings, handler: Handler
) -> Callable[[Request], Awaitable[Response]]:
    async def endpoint(request: Request) -> Response:
        try:
            user = console_user(request, settings)
            result = await handler(request, await source(), user)
        except Auth.exceptions.HTTPException as refusal:
            return auth_refusal_response(refusal)
        except Forbidden as error:
            return _json({"detail": str(error)}, 403)
        except ConvomemError as error:
            return _refusal(error)
        return result if isinstance(result, Response) else _json(_plain(result))

    return endpoint


async def _body(request: Request) -> dict[str, Any]:
    """The JSON object a state-changing request carries (a form post from another page is no JSON)."""
    if request.headers.get("content-type", "").split(";")[0].strip() != "application/json":
        raise InvalidInput("Send the request as application/json.")
    try:
        body = json.loads(await request.body())
    except (ValueError, UnicodeDecodeError):
        raise InvalidInput("The request body is not valid JSON.") from None
    if not isinstance(body, dict):
        raise InvalidInput("Send a JSON object.")
    return body


def _text(body: dict[str, Any], key: str, *, required: bool = True) -> str | None:
    value = body.get(key)
    if value is None and not required:
        return None
    if not isinstance(value, str):
        raise InvalidInput(f"Give `{key}` as a string.")
    return value


def _whose(request: Request, user: ConsoleUser, body: dict[str, Any] | None = None) -> str:
    """The user whose data is asked for: the `user` parameter (anyone's for the local user), else self."""
    named = (body or {}).get("user") or request.query_params.get("user") or None
    if named is None:
        return user.identity
    if not isinstance(named, str):
        raise InvalidInput("Give `user` as a string.")
    if not user.may_see(named):
        raise Forbidden("That belongs to another user: a token sees its own user's data only.")
    return named


async def _owned_thread(request: Request, cm: Convomem, user: ConsoleUser) -> tuple[str, str | None]:
    """The thread in the URL and its user; UnknownThread (404) when it does not exist for this caller."""
    thread_id = request.path_params["thread_id"]
    await cm.require_thread(thread_id)
    info = await cm.thread(thread_id)
    owner = info.user_id if info else None
    if not user.may_see(owner):
        raise UnknownThread(f"No thread {thread_id!r}: `threads` lists yours.")
    return thread_id, owner


async def me(request: Request, cm: Convomem, user: ConsoleUser) -> Any:
    users = [user.identity]
    if not user.confined:
        listed = await cm.threads(status="all", limit=1000)
        users += sorted({t.user_id for t in listed if t.user_id} - {user.identity})
    return {"user": user.identity, "confined": user.confined, "users": users, "entity_types": ENTITY_TYPES}


async def threads(request: Request, cm: Convomem, user: ConsoleUser) -> Any:
    status = request.query_params.get("status", "active")
    search = request.query_params.get("search") or None
    return await cm.threads(user=_whose(request, user), search=search, status=status)


async def thread(request: Request, cm: Convomem, user: ConsoleUser) -> Any:
    thread_id, _ = await _owned_thread(request, cm, user)
    state = await cm.state(thread_id)
    return {
        "info": await cm.thread(thread_id),
        "checkpoints": await cm.history(thread_id, limit=HISTORY_LIMIT),
        "head": state.config["configurable"].get("checkpoint_id"),
        "next": list(state.next),
        "pending": await cm.pending_interrupts(thread_id),
    }


async def checkpoint(request: Request, cm: Convomem, user: ConsoleUser) -> Any:
    thread_id, _ = await _owned_thread(request, cm, user)
    full_id = await cm.resolve_checkpoint(thread_id, request.path_params["checkpoint_id"])
    state = await cm.graph.aget_state(cm.config(thread_id, full_id))
    return {
        "checkpoint_id": full_id,
        "messages": state.values.get("messages") or [],
        "summary": state.values.get("summary") or "",
        "next": list(state.next),
    }


async def transcript(request: Request, cm: Convomem, user: ConsoleUser) -> Any:
    thread_id, owner = await _owned_thread(request, cm, user)
    query = request.query_params.get("q", "").strip()
    if query:
        return {"hits": await cm.search(query, user_id=owner, thread_id=thread_id, limit=100)}
    entries = await cm.transcript(thread_id)
    return {"entries": [{**_message(e.message), "created_at": e.created_at} for e in entries]}


async def _stream(events: AsyncIterator[TurnEvent]) -> Response:
    """The run's events as NDJSON, one object a line; a refusal before the first event is a 4xx."""
    try:
        first = await anext(events)
    except StopAsyncIteration:
        first = None

    async def lines() -> AsyncIterator[bytes]:
        pending = [first] if first is not None else []
        try:
            for event in pending:
                yield _event_line(event)
            async for event in events:
                yield _event_line(event)
        except ConvomemError as error:
            yield json.dumps({"type": "error", "detail": str(error)}).encode() + b"\n"

    return StreamingResponse(lines(), media_type="application/x-ndjson", headers=SECURITY_HEADERS)


def _event_line(event: TurnEvent) -> bytes:
    return json.dumps({"type": type(event).__name__, **to_jsonable_python(_plain(event))}).encode() + b"\n"


async def replay(request: Request, cm: Convomem, user: ConsoleUser) -> Any:
    thread_id, owner = await _owned_thread(request, cm, user)
    body = await _body(request)
    checkpoint_id = _text(body, "checkpoint_id") or ""
    return await _stream(cm.replay(thread_id, checkpoint_id, user_id=owner))


async def fork(request: Request, cm: Convomem, user: ConsoleUser) -> Any:
    thread_id, owner = await _owned_thread(request, cm, user)
    body = await _body(request)
    checkpoint_id, text = _text(body, "checkpoint_id") or "", _text(body, "message") or ""
    return await _stream(cm.fork(thread_id, checkpoint_id, text, user_id=owner))


async def archive(request: Request, cm: Convomem, user: ConsoleUser) -> Any:
    thread_id, _ = await _owned_thread(request, cm, user)
    archived = (await _body(request)).get("archived", True)
    if not isinstance(archived, bool):
        raise InvalidInput("Give `archived` as true or false.")
    await cm.archive_thread(thread_id, archived=archived)
    return await cm.thread(thread_id)


async def delete(request: Request, cm: Convomem, user: ConsoleUser) -> Any:
    thread_id, _ = await _owned_thread(request, cm, user)
    with_transcript = (await _body(request)).get("with_transcript")
    if not isinstance(with_transcript, bool):
        raise InvalidInput("Say whether the transcript goes too: `with_transcript` true or false.")
    return await cm.delete_thread(thread_id, with_transcript=with_transcript)


async def export(request: Request, cm: Convomem, user: ConsoleUser) -> Any:
    thread_id, _ = await _owned_thread(request, cm, user)
    document = await cm.export_thread(thread_id)
    disposition = {"Content-Disposition": f'attachment; filename="{thread_id}.json"'}
    return _json(document, headers=disposition)


async def import_(request: Request, cm: Convomem, user: ConsoleUser) -> Any:
    body = await _body(request)
    document = read_export(json.dumps(body.get("document")))
    owners = {document.user_id, *(entry.user_id for entry in document.transcript)}
    if not all(user.may_see(owner) for owner in owners):
        raise Forbidden("That conversation belongs to another user: a token imports its own user's only.")
    thread_id = await cm.import_thread(document, thread_id=_text(body, "thread_id", required=False) or None)
    return await cm.thread(thread_id)


async def memory(request: Request, cm: Convomem, user: ConsoleUser) -> Any:
    whose = _whose(request, user)
    return {"user": whose, "entities": await cm.entities(whose), "profile": await cm.profile(whose)}


async def add_entity(request: Request, cm: Convomem, user: ConsoleUser) -> Any:
    body = await _body(request)
    whose = _whose(request, user, body)
    entity_type, value = _text(body, "type") or "", _text(body, "value") or ""
    context = _text(body, "context", required=False) or ""
    return await cm.add_entity(entity_type, value, context=context, user_id=whose)


async def edit_entity(request: Request, cm: Convomem, user: ConsoleUser) -> Any:
    body = await _body(request)
    whose = _whose(request, user, body)
    contexts = body.get("contexts")
    if contexts is not None and not (
        isinstance(contexts, list) and all(isinstance(c, str) for c in contexts)
    ):
        raise InvalidInput("Give `contexts` as a list of strings.")
    return await cm.edit_entity(
        _text(body, "name") or "",
        entity_type=_text(body, "type", required=False),
        value=_text(body, "value", required=False),
        contexts=contexts,
        user_id=whose,
    )


async def delete_entity(request: Request, cm: Convomem, user: ConsoleUser) -> Any:
    body = await _body(request)
    return await cm.forget_entity(_text(body, "name") or "", _whose(request, user, body))


async def set_fact(request: Request, cm: Convomem, user: ConsoleUser) -> Any:
    body = await _body(request)
    attribute, value = _text(body, "attribute") or "", _text(body, "value") or ""
    return await cm.set_fact(attribute, value, user_id=_whose(request, user, body))


async def unset_fact(request: Request, cm: Convomem, user: ConsoleUser) -> Any:
    body = await _body(request)
    return await cm.unset_fact(_text(body, "attribute") or "", user_id=_whose(request, user, body))


async def ops(request: Request, cm: Convomem, user: ConsoleUser) -> Any:
    window = request.query_params.get("window", "24h")
    try:
        buckets = int(request.query_params.get("buckets", "48"))
    except ValueError:
        raise InvalidInput("Give `buckets` as a whole number.") from None
    whose = _whose(request, user) if user.confined or request.query_params.get("user") else None
    report = await cm.ops(window, user_id=whose)
    series = await cm.ops_series(window, buckets=buckets, user_id=whose)
    return {"report": report, "series": series}


async def health(request: Request, cm: Convomem, user: ConsoleUser) -> Any:
    report = await cm.health()
    return {"status": report.status, "checks": report.checks}


_GET: dict[str, Handler] = {
    "/health": health,
    "/me": me,
    "/threads": threads,
    "/threads/{thread_id}": thread,
    "/threads/{thread_id}/checkpoints/{checkpoint_id}": checkpoint,
    "/threads/{thread_id}/transcript": transcript,
    "/threads/{thread_id}/export": export,
    "/memory": memory,
    "/ops": ops,
}
_POST: dict[str, Handler] = {
    "/threads/import": import_,
    "/threads/{thread_id}/replay": replay,
    "/threads/{thread_id}/fork": fork,
    "/threads/{thread_id}/archive": archive,
    "/threads/{thread_id}/delete": delete,
    "/memory/entities": add_entity,
    "/memory/entities/edit": edit_entity,
    "/memory/entities/delete": delete_entity,
    "/memory/facts": set_fact,
    "/memory/facts/unset": unset_fact,
}


def console_api_routes(source: ConvomemSource, settings: Settings) -> list[Route]:
    """The API's routes; `source` gives the process's Convomem (opened on first use)."""
    routes = [
        Route(CONSOLE_API + path, _endpoint(source, settings, h), methods=["GET"]) for path, h in _GET.items()
    ]
    routes += [
        Route(CONSOLE_API + path, _endpoint(source, settings, h), methods=["POST"])
        for path, h in _POST.items()
    ]
    return routes
