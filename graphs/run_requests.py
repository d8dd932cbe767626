"""LangGraph Server run requests checked against the turn's rules before the server creates the run.

The same checks TurnGraph makes when the run starts (graphs.turn_graph.TurnGraph.check_run), made earlier
so that a refused input is a 4xx with the CLI's message and the server writes nothing, not even a run.
"""

from __future__ import annotations

import asyncio
from typing import Any

from langgraph.types import Command

from checkpoint.saver import ConvomemSaver
from checkpoint.serde import make_serializer
from graphs.http_errors import as_auth_refusal
from graphs.input_rules import check_command, check_context
from graphs.turn_graph import TurnGraph
from nodes.errors import ConvomemError

__all__ = ["check_assistant_request", "check_run_request"]

_checkers: list[TurnGraph] = []
_building = asyncio.Lock()


async def _checker() -> TurnGraph:
    """The server's graph with a checkpointer of its own pool, to read thread state for the checks."""
    async with _building:
        if not _checkers:
            from graphs.conversation import server_graph
            from graphs.settings import Settings

            graph = await server_graph()
            assert graph.rules is not None and graph.rules.pool is not None
            serde = make_serializer(encryption_key=Settings().encryption_key)
            _checkers.append(
                graph.copy(update={"checkpointer": ConvomemSaver(graph.rules.pool, serde=serde)})
            )
    return _checkers[0]


async def check_run_request(value: dict[str, Any], *, read_thread: bool = True) -> None:
    """Refuse a run (Auth.exceptions.HTTPException, 4xx) whose input, context, thread or checkpoint the
    turn's rules refuse. `value` is langgraph-api's RunsCreate: thread_id and the run's kwargs.

    `read_thread=False` (bearer tokens: the server has not yet checked that the thread is the caller's)
    checks only what the request itself says; a rule that reads the thread (nothing to resume, an unknown
    checkpoint, a pending review) then refuses the run when it starts, so another user's thread never
    answers anything but the server's 404."""
    kwargs = value.get("kwargs") or {}
    configurable = dict((kwargs.get("config") or {}).get("configurable") or {})
    try:
        # A request's own context is strict; one the server copied from `configurable` is not. The
        # `__context_provided__` marker is langgraph-api's private detail, pinned by
        # tests/unit/test_upstream_pins.py::test_the_server_marks_a_run_whose_request_gave_a_context.
        check_context(kwargs.get("context"), strict=bool(configurable.get("__context_provided__")))
        command = kwargs.get("command")
        graph_input = Command(resume=check_command(command).resume) if command else kwargs.get("input")
        thread_id = value.get("thread_id")
        config: dict[str, Any] = {"configurable": {}}
        if thread_id is not None:
            config["configurable"]["thread_id"] = str(thread_id)
            if configurable.get("checkpoint_id"):
                config["configurable"]["checkpoint_id"] = configurable["checkpoint_id"]
        graph = await _checker()
        if not read_thread:
            config = {"configurable": {}}
        await graph.check_run(graph_input, config, kwargs.get("context"))  # type: ignore[arg-type]
    except ConvomemError as error:
        raise as_auth_refusal(error) from None


async def check_assistant_request(value: dict[str, Any]) -> None:
    """Refuse (4xx, the CLI's words) a LangGraph assistant whose context names an unknown assistant file
    or holds what a run's context may not: its runs would all be refused when they start."""
    try:
        context = check_context(value.get("context"))
        graph = await _checker()
        assert graph.rules is not None and graph.rules.assistants is not None
        graph.rules.assistants.check_name(context.assistant)
    except ConvomemError as error:
        raise as_auth_refusal(error) from None
