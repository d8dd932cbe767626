"""The LangGraph Server path: `langgraph dev` (one per database) driven by langgraph-sdk, as any client."""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from typing import Any

import httpx
from langgraph_sdk import get_client
from langgraph_sdk.client import LangGraphClient

from graphs.cli_render import tool_line
from graphs.events import ToolCall, ToolResult
from tests.e2e.server_support import LangGraphDevServer
from tests.parity.drivers import TURN_TIMEOUT, Outcome, Pending
from tests.parity.probe import eventually

__all__ = ["GRAPH", "ServerDriver", "ServerTurn", "user_says"]

GRAPH = "convomem"
OPS_FILE = ".langgraph_ops.pckl"
"""Where `langgraph dev` (langgraph-runtime-inmem) saves its threads and runs, in `.langgraph_api/`."""


def user_says(text: str) -> dict[str, Any]:
    return {"messages": [{"role": "user", "content": text}]}


def tool_lines(updates: list[Any]) -> list[str]:
    """The CLI's tool lines for the calls and results in streamed updates (messages as JSON dicts)."""
    calls: dict[str, ToolCall] = {}
    lines: list[str] = []
    for update in updates:
        for node, values in update.items() if isinstance(update, dict) else ():
            for message in (values or {}).get("messages") or [] if isinstance(values, dict) else []:
                if node == "respond" and message.get("type") == "ai":
                    for call in message.get("tool_calls") or []:
                        calls[call["id"]] = ToolCall(call["id"], call["name"], call["args"])
                elif message.get("type") == "tool":
                    error = message.get("status") == "error"
                    result = ToolResult(
                        message["tool_call_id"], message.get("name") or "", message["content"], error
                    )
                    lines.append(tool_line(calls.get(result.id), result).plain)
    return lines


def http_outcome(error: httpx.HTTPStatusError) -> Outcome:
    """4xx: refused, its `detail` is the message; anything else failed (a 5xx is no answer to a user)."""
    response = error.response
    try:
        body: Any = response.json()
    except ValueError:
        body = response.text
    detail = body.get("detail") if isinstance(body, dict) else None
    report = f"HTTP {response.status_code} {error.request.method} {error.request.url}\n{json.dumps(body)}"
    if 400 <= response.status_code < 500:
        return Outcome("refused", detail if isinstance(detail, str) else "", report)
    return Outcome("failed", detail=report)


@dataclass
class ServerTurn:
    """A run created on the server; killing it kills the server, which then starts again."""

    driver: ServerDriver
    thread: str
    run_id: str
    created: float = field(default_factory=time.time)

    async def outcome(self) -> Outcome:
        async with self.driver.client() as client:
            return await self.driver.finish(client, self.thread, self.run_id)

    async def kill(self) -> None:
        await self.driver.crash(saved_since=self.created)


@dataclass
class ServerDriver:
    """Runs are created with `runs.create` and awaited with `runs.join`: a 4xx at creation is a refusal,
    a run whose status is not `success` a failed turn (its error's message is the outcome's)."""

    server: LangGraphDevServer
    path: str = "server"

    @asynccontextmanager
    async def client(self) -> AsyncIterator[LangGraphClient]:
        async with get_client(url=self.server.url, api_key=None, timeout=TURN_TIMEOUT) as opened:
            yield opened

    async def crash(self, *, saved_since: float) -> None:
        """SIGKILL the `langgraph dev` process tree, then start it again on the same database.

        `langgraph dev` keeps its threads and runs in memory and writes them to `.langgraph_api/` every
        10 s: the kill waits for a write after `saved_since` (a wall-clock time), so the server knows
        the thread and the run when it starts again, as a server with a durable store always would.
        """
        ops = self.server.workdir / ".langgraph_api" / OPS_FILE
        await eventually(
            lambda: ops.exists() and ops.stat().st_mtime > saved_since,
            what=f"langgraph dev saving its threads and runs to {ops}",
            timeout=30,
        )
        await asyncio.to_thread(self.server.kill)
        await asyncio.to_thread(self.server.start)

    async def new_thread(self) -> str:
        async with self.client() as client:
            return str((await client.threads.create())["thread_id"])

    async def finish(self, client: LangGraphClient, thread: str, run_id: str) -> Outcome:
        try:
            result = await client.runs.join(thread, run_id)
            run = await client.runs.get(thread, run_id)
        except httpx.HTTPStatusError as error:
            return http_outcome(error)
        except httpx.HTTPError as error:
            return Outcome("failed", detail=f"{type(error).__name__}: {error}")
        if run["status"] == "success":
            return Outcome("ok")
        error = result.get("__error__") if isinstance(result, dict) else None
        message = str(error.get("message") or "") if isinstance(error, dict) else ""
        report = f"run status {run['status']!r}: {json.dumps(result, default=str)[-2000:]}"
        return Outcome("failed", message, report, None)

    async def create(self, thread: str, **run: Any) -> str | Outcome:
        """The new run's id, or the refusal (or failure) that answered its creation."""
        async with self.client() as client:
            try:
                created = await client.runs.create(thread, GRAPH, **run)
            except httpx.HTTPStatusError as error:
                return http_outcome(error)
            except httpx.HTTPError as error:
                return Outcome("failed", detail=f"{type(error).__name__}: {error}")
        return str(created["run_id"])

    async def run(self, thread: str, **run: Any) -> Outcome:
        """One run, start to end: `input`, `command`, `context`, `checkpoint_id` as the SDK takes them."""
        created = await self.create(thread, **run)
        if isinstance(created, Outcome):
            return created
        async with self.client() as client:
            return await self.finish(client, thread, created)

    @staticmethod
    def context(user: str, review: bool = False, assistant: str | None = None) -> dict[str, Any]:
        named = {} if assistant is None else {"assistant": assistant}
        return {"user_id": user, **({"review_memory": True} if review else {}), **named}

    async def send(
        self, thread: str, text: str, user: str, *, review: bool = False, assistant: str | None = None
    ) -> Outcome:
        return await self.run(thread, input=user_says(text), context=self.context(user, review, assistant))

    async def send_seeing_tools(self, thread: str, text: str, user: str) -> tuple[Outcome, list[str]]:
        """The run streamed (`stream_mode="updates"`), as a client shows tool traffic: respond's tool
        calls and the tools node's results are in the graph's own updates."""
        updates: list[Any] = []
        async with self.client() as client:
            try:
                async for part in client.runs.stream(
                    thread, GRAPH, input=user_says(text), context=self.context(user), stream_mode="updates"
                ):
                    if part.event == "error":
                        return Outcome("failed", str(part.data), json.dumps(part.data, default=str)), []
                    if part.event == "updates":
                        updates.append(part.data)
            except httpx.HTTPStatusError as error:
                return http_outcome(error), []
        return Outcome("ok"), tool_lines(updates)

    async def resume(self, thread: str, value: str | None, user: str) -> Outcome:
        """No value: continue an unfinished run (input None); a value answers the interrupt."""
        if value is None:
            return await self.run(thread, input=None, context=self.context(user))
        return await self.run(thread, command={"resume": value}, context=self.context(user))

    async def replay(self, thread: str, checkpoint: str, user: str) -> Outcome:
        return await self.run(thread, input=None, checkpoint_id=checkpoint, context=self.context(user))

    async def fork(self, thread: str, checkpoint: str, text: str, user: str) -> Outcome:
        """A run with new input from a past checkpoint branches there (what the SDK offers for a fork)."""
        return await self.run(
            thread, input=user_says(text), checkpoint_id=checkpoint, context=self.context(user)
        )

    async def history(self, thread: str) -> list[str]:
        async with self.client() as client:
            found = await client.threads.get_history(thread, limit=1000)
        return [str(entry["checkpoint"]["checkpoint_id"]) for entry in found]

    async def readable(self, thread: str) -> Outcome:
        async with self.client() as client:
            try:
                await client.threads.get_state(thread)
            except httpx.HTTPStatusError as error:
                return http_outcome(error)
        return Outcome("ok")

    async def busy(self, thread: str) -> bool:
        async with self.client() as client:
            return (await client.threads.get(thread))["status"] == "busy"

    async def begin(self, thread: str, text: str, user: str, *, killable: bool = False) -> Pending:
        created = await self.create(thread, input=user_says(text), context=self.context(user))
        assert not isinstance(created, Outcome), f"the run was not created: {created}"
        return ServerTurn(self, thread, created)
