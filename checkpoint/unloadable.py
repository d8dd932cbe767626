"""A stored checkpoint that cannot be loaded is reported with its thread and checkpoint ids."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

from langchain_core.runnables import RunnableConfig
from langgraph.checkpoint.base import CheckpointTuple, get_checkpoint_id
from langgraph.checkpoint.postgres.aio import AsyncPostgresSaver
from psycopg.types.json import Jsonb

from checkpoint.serde import CheckpointDataRefused
from nodes.errors import ConfigError, ConvomemError

__all__ = ["LOAD_ERRORS", "NameUnloadableRows"]

# What loading a stored row can raise: the serializer's refusal (CheckpointDataRefused), the cipher's
# wrong key (ConfigError), or a decoder's ValueError / TypeError. Database errors (psycopg.Error) are none
# of these, and an error no stored row reproduces is passed on unchanged.
LOAD_ERRORS = (ConvomemError, ValueError, TypeError)
SUSPECTS_LIMIT = 100

# The checkpoints a failed get or list may have been loading, in upstream's order (newest first), with its
# conditions: thread, namespace and id from the config, metadata filter, `before`; `upto` resumes a list
# after the checkpoints it already returned. Upstream detail: the conditions of the private
# `_search_where` (langgraph.checkpoint.postgres.base) and the order of aget_tuple / alist; pinned by
# tests/unit/test_upstream_pins.py::test_suspects_are_read_with_upstreams_conditions_and_order.
SUSPECTS_SQL = f"""
    SELECT thread_id, checkpoint_ns, checkpoint_id FROM checkpoints
    WHERE (%(thread)s::text IS NULL OR thread_id = %(thread)s)
    AND (%(ns)s::text IS NULL OR checkpoint_ns = %(ns)s)
    AND (%(id)s::text IS NULL OR checkpoint_id = %(id)s)
    AND (%(filter)s::jsonb IS NULL OR metadata @> %(filter)s::jsonb)
    AND (%(before)s::text IS NULL OR checkpoint_id < %(before)s)
    AND (%(upto)s::text IS NULL OR checkpoint_id <= %(upto)s)
    ORDER BY checkpoint_id DESC LIMIT {SUSPECTS_LIMIT}
"""


class NameUnloadableRows(AsyncPostgresSaver):
    """Saver mixin: upstream's get and list, with a row they cannot load named (the serializer alone
    cannot tell which row it refused). Costs nothing until a load fails."""

    async def aget_tuple(self, config: RunnableConfig) -> CheckpointTuple | None:
        """Upstream's get; a row it cannot load is reported with its thread and checkpoint ids."""
        try:
            return await super().aget_tuple(config)
        except LOAD_ERRORS as error:
            configurable = config["configurable"]
            named = await self._name_unloadable(
                error,
                thread=str(configurable["thread_id"]),
                ns=str(configurable.get("checkpoint_ns", "")),
                checkpoint_id=get_checkpoint_id(config),
            )
            if named is None:
                raise
            raise named from error

    async def alist(
        self,
        config: RunnableConfig | None,
        *,
        filter: dict[str, Any] | None = None,
        before: RunnableConfig | None = None,
        limit: int | None = None,
    ) -> AsyncIterator[CheckpointTuple]:
        """Upstream's list; a row it cannot load is reported after the checkpoints listed before it."""
        listed: set[tuple[str, str, str]] = set()
        last: str | None = None
        try:
            async for found in super().alist(config, filter=filter, before=before, limit=limit):
                configurable = found.config["configurable"]
                last = str(configurable["checkpoint_id"])
                listed.add((str(configurable["thread_id"]), str(configurable["checkpoint_ns"]), last))
                yield found
        except LOAD_ERRORS as error:
            configurable = (config or {}).get("configurable", {})
            thread, ns = configurable.get("thread_id"), configurable.get("checkpoint_ns")
            named = await self._name_unloadable(
                error,
                thread=None if not config else str(thread),
                ns=None if ns is None else str(ns),
                checkpoint_id=get_checkpoint_id(config) if config else None,
                filter=filter,
                before=get_checkpoint_id(before) if before else None,
                upto=last,
                listed=listed,
            )
            if named is None:
                raise
            raise named from error

    async def _name_unloadable(
        self,
        error: Exception,
        *,
        thread: str | None,
        ns: str | None,
        checkpoint_id: str | None,
        filter: dict[str, Any] | None = None,
        before: str | None = None,
        upto: str | None = None,
        listed: set[tuple[str, str, str]] | frozenset[tuple[str, str, str]] = frozenset(),
    ) -> ConvomemError | None:
        """`error` said again with the thread and checkpoint of the row behind it: the first checkpoint, in
        the order the failed call read them, that upstream cannot load alone. None when every candidate
        loads (the error came from elsewhere)."""
        params = {
            "thread": thread,
            "ns": ns,
            "id": checkpoint_id,
            "filter": Jsonb(filter) if filter else None,
            "before": before,
            "upto": upto,
        }
        # Upstream's private `_cursor()`: pinned by
        # tests/unit/test_upstream_pins.py::test_cursor_takes_only_the_pipeline_keyword and
        # tests/integration/test_upstream_pins.py::test_cursor_gives_dict_rows_on_the_bound_connection.
        async with self._cursor() as cur:
            await cur.execute(SUSPECTS_SQL, params)
            suspects = [
                (row["thread_id"], row["checkpoint_ns"], row["checkpoint_id"]) for row in await cur.fetchall()
            ]
        for key in suspects:
            if key in listed:
                continue
            thread_id, checkpoint_ns, suspect_id = key
            target: RunnableConfig = {
                "configurable": {
                    "thread_id": thread_id,
                    "checkpoint_ns": checkpoint_ns,
                    "checkpoint_id": suspect_id,
                }
            }
            try:
                await super().aget_tuple(target)
            except LOAD_ERRORS as refused:
                return _unloadable(refused, thread_id, checkpoint_ns, suspect_id)
        return None


def _unloadable(error: Exception, thread_id: str, ns: str, checkpoint_id: str) -> ConvomemError:
    """The refusal, prefixed with the row's thread and checkpoint; same class when it is ours."""
    where = f"Thread {thread_id!r}" + (f" (namespace {ns!r})" if ns else "") + f", checkpoint {checkpoint_id}"
    if isinstance(error, ConfigError):
        return ConfigError(f"{where}: {error}")
    if isinstance(error, ConvomemError):
        return CheckpointDataRefused(f"{where}: {error}")
    detail = " ".join(str(error).split())[:120]
    return CheckpointDataRefused(
        f"{where}: its stored data cannot be read ({type(error).__name__}: {detail}). Restore the thread "
        "from a backup or delete it."
    )
