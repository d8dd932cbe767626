"""Encryption at rest on the real Postgres: what reaches the checkpoint tables, and reading it back.

A planted secret travels through every kind of row a turn writes: the user's message and the reply
(message blobs), the memory review interrupt and the extraction task (writes), the summary and the
memory context (plain strings, which upstream keeps in the `checkpoint` JSON column).
"""

from __future__ import annotations

import base64
import uuid
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any, cast

import ormsgpack
import pytest
from langchain_core.messages import HumanMessage
from langchain_core.runnables import RunnableConfig
from langgraph.checkpoint.postgres.aio import AsyncPostgresSaver
from langgraph.checkpoint.serde.jsonplus import EXT_CONSTRUCTOR_SINGLE_ARG
from langgraph.graph.state import CompiledStateGraph
from langgraph.types import Command

from checkpoint.persistence import open_persistence
from checkpoint.saver import ConvomemSaver
from checkpoint.serde import CheckpointDataRefused, SealInlineValues, make_serializer
from graphs.conversation import build_graph, compile_graph
from graphs.models import shared_chat_model
from graphs.settings import Settings, graph_config
from nodes.errors import ConfigError
from nodes.state import Context
from tests.integration.support import rows

Graph = CompiledStateGraph[Any, Any, Any, Any]

KEY = base64.b64encode(bytes(range(32))).decode()
OTHER_KEY = base64.b64encode(bytes(range(100, 132))).decode()
SECRET = "Zanzibarcode"
FILLER = " ".join(f"filler{n}" for n in range(60))
INTRODUCTION = f"My name is {SECRET}. {FILLER}"
"""The fake model extracts the capitalised name and echoes the text into the reply and the summary;
the filler pushes the working set (64 tokens) over budget, so the turn also folds a summary."""
TABLES = ("checkpoints", "checkpoint_blobs", "checkpoint_writes")
THREAD: RunnableConfig = {"configurable": {"thread_id": "t"}}
REVIEW = Context(user_id="u1", review_memory=True)
PLAIN = Context(user_id="u1")
WORKING_SET_TOKENS = 64


def sealing_saver_class() -> type[ConvomemSaver]:
    """ConvomemSaver with the inline-value sealing mixin: itself once saver.py mixes it in."""
    if issubclass(ConvomemSaver, SealInlineValues):
        return ConvomemSaver
    return cast(type[ConvomemSaver], type("SealingSaver", (SealInlineValues, ConvomemSaver), {}))


@asynccontextmanager
async def open_graph(
    settings: Settings, key: str | None, saver_class: type[AsyncPostgresSaver] | None = None
) -> AsyncIterator[Graph]:
    """The conversation graph on the test database, its saver's serializer made for `key` (what the
    wiring of CONVOMEM_ENCRYPTION_KEY builds); the fake model answers over HTTP."""
    config = graph_config(settings.model_copy(update={"working_set_tokens": WORKING_SET_TOKENS}))
    async with open_persistence(cast(str, settings.database_url)) as opened:
        saver = (saver_class or sealing_saver_class())(opened.pool, serde=make_serializer(encryption_key=key))
        builder = build_graph(config, shared_chat_model(settings))
        yield compile_graph(builder, None, checkpointer=saver, store=opened.store)


async def say(graph: Graph, text: str, context: Context = PLAIN) -> dict[str, Any]:
    message = HumanMessage(text, id=str(uuid.uuid4()))
    return cast(dict[str, Any], await graph.ainvoke({"messages": [message]}, THREAD, context=context))


async def converse(graph: Graph) -> None:
    """Introduce the secret with a memory review, approve it, then a turn that recalls it."""
    paused = await say(graph, INTRODUCTION, REVIEW)
    assert paused["__interrupt__"]
    await graph.ainvoke(Command(resume="approve"), THREAD, context=REVIEW)
    await say(graph, "Where do I live?")


async def values(graph: Graph) -> dict[str, Any]:
    return (await graph.aget_state(THREAD)).values


def tables_holding(database_url: str, text: str) -> set[str]:
    """Checkpoint tables with a row showing `text`: in any column read as text (the JSON columns), or
    as raw bytes inside a blob (a bytea column reads as hex, which would hide it)."""
    found = set()
    for table in TABLES:
        query = f"SELECT count(*) FROM {table} t WHERE t::text LIKE %s"
        params: tuple[str, ...] = (f"%{text}%",)
        if table != "checkpoints":
            query += " OR position(convert_to(%s, 'UTF8') in t.blob) > 0"
            params += (text,)
        [(count,)] = rows(database_url, query, params)
        if count:
            found.add(table)
    return found


# --------------------------------------------------------------------------- what is stored where


async def test_without_a_key_the_secret_is_plain_in_every_checkpoint_table(
    settings: Settings, database_url: str
) -> None:
    async with open_graph(settings, None) as graph:
        await converse(graph)

    assert tables_holding(database_url, SECRET) == set(TABLES)


async def test_upstream_encryption_alone_leaves_string_channels_in_the_json_column(
    settings: Settings, database_url: str
) -> None:
    async with open_graph(settings, KEY, AsyncPostgresSaver) as graph:
        await converse(graph)

    assert tables_holding(database_url, SECRET) == {"checkpoints"}
    leaked = rows(
        database_url,
        "SELECT DISTINCT v.key FROM checkpoints, jsonb_each_text(checkpoint -> 'channel_values') v "
        "WHERE v.value LIKE %s ORDER BY 1",
        (f"%{SECRET}%",),
    )
    assert [key for (key,) in leaked] == ["memory_context", "summary"]


async def test_with_a_key_no_checkpoint_table_shows_the_secret(settings: Settings, database_url: str) -> None:
    async with open_graph(settings, KEY) as graph:
        await converse(graph)
        state = await values(graph)

    assert tables_holding(database_url, SECRET) == set()
    assert SECRET in state["summary"]
    assert SECRET in state["memory_context"]
    formats = rows(database_url, "SELECT type FROM checkpoint_blobs UNION SELECT type FROM checkpoint_writes")
    assert {kind for (kind,) in formats} <= {"msgpack+aes", "null+aes", "empty"}
    inline = rows(
        database_url,
        "SELECT DISTINCT jsonb_typeof(v.value) "
        "FROM checkpoints c, jsonb_each(c.checkpoint -> 'channel_values') v",
    )
    assert {kind for (kind,) in inline} <= {"null"}  # nothing but empty branch markers stays inline


# ---------------------------------------------------------------------------------- reading back


async def test_an_encrypted_thread_reloads_and_continues(settings: Settings, database_url: str) -> None:
    async with open_graph(settings, KEY) as graph:
        await converse(graph)
        before = await values(graph)
        history = [s.config async for s in graph.aget_state_history(THREAD)]

    async with open_graph(settings, KEY) as graph:
        assert await values(graph) == before
        assert [s.config async for s in graph.aget_state_history(THREAD)] == history
        result = await say(graph, "And what is my name?")
        assert result["messages"][-1].type == "ai"
        assert (await graph.aget_state(THREAD)).next == ()
        assert SECRET in result["summary"]

    assert tables_holding(database_url, SECRET) == set()


@pytest.mark.parametrize(
    ("key", "message"),
    [(None, "saved encrypted: set CONVOMEM_ENCRYPTION_KEY"), (OTHER_KEY, "does not decrypt this thread")],
    ids=["no-key", "wrong-key"],
)
async def test_an_encrypted_thread_is_refused_without_the_right_key(
    settings: Settings, key: str | None, message: str
) -> None:
    async with open_graph(settings, KEY) as graph:
        await say(graph, "hello there")

    async with open_graph(settings, key) as graph:
        with pytest.raises(ConfigError, match=message):
            await graph.aget_state(THREAD)
        with pytest.raises(ConfigError, match=message):
            await say(graph, "hello again")

    async with open_graph(settings, KEY) as graph:  # refusing changed nothing
        assert [m.type for m in (await values(graph))["messages"]] == ["human", "ai"]


async def test_a_thread_written_before_the_key_was_set_continues_encrypted(
    settings: Settings, database_url: str
) -> None:
    async with open_graph(settings, None) as graph:
        await converse(graph)
        before = await values(graph)
    written_plain = [cid for (cid,) in rows(database_url, "SELECT checkpoint_id FROM checkpoints")]

    async with open_graph(settings, KEY) as graph:
        assert await values(graph) == before
        await say(graph, "hi")  # folds nothing: the summary channel keeps its old version
        after = await values(graph)

    async with open_graph(settings, KEY) as graph:
        assert await values(graph) == after
    assert after["summary"] == before["summary"]
    newer = rows(
        database_url,
        "SELECT count(*) FROM checkpoints WHERE checkpoint_id <> ALL(%s) "
        "AND (checkpoint::text LIKE %s OR checkpoint -> 'channel_values' ? 'summary')",
        (written_plain, f"%{SECRET}%"),
    )
    assert newer == [(0,)]  # only the rows written before the key still show it


# ---------------------------------------------------------------------------------- tampered rows


NEWEST_BLOB = """
    (SELECT checkpoint FROM checkpoints WHERE thread_id = %s ORDER BY checkpoint_id DESC LIMIT 1) c
    WHERE b.thread_id = %s AND b.channel = %s AND b.version = c.checkpoint -> 'channel_versions' ->> %s
"""
"""Where the thread's newest checkpoint finds `channel`'s value: (thread, thread, channel, channel)."""


def newest_blob(database_url: str, thread_id: str, channel: str) -> bytes:
    [(blob,)] = rows(
        database_url,
        f"SELECT b.blob FROM checkpoint_blobs b, {NEWEST_BLOB}",
        (thread_id, thread_id, channel, channel),
    )
    return bytes(blob)


def plant(database_url: str, thread_id: str, channel: str, kind: str, blob: bytes) -> None:
    """Overwrite the blob the thread's newest checkpoint reads for `channel`, as an intruder could."""
    changed = rows(
        database_url,
        f"UPDATE checkpoint_blobs b SET type = %s, blob = %s FROM {NEWEST_BLOB} RETURNING 1",
        (kind, blob, thread_id, thread_id, channel, channel),
    )
    assert changed == [(1,)]


async def test_a_planted_blob_is_refused_and_other_threads_still_load(
    settings: Settings, database_url: str, tmp_path: Path
) -> None:
    marker = tmp_path / "pwned"
    other: RunnableConfig = {"configurable": {"thread_id": "other"}}
    async with open_graph(settings, None) as graph:
        await say(graph, "hello there")
        await graph.ainvoke({"messages": [HumanMessage("hi", id="o1")]}, other, context=PLAIN)
    payload = ormsgpack.Ext(EXT_CONSTRUCTOR_SINGLE_ARG, ormsgpack.packb(("os", "system", f"touch {marker}")))
    plant(database_url, "t", "messages", "msgpack", ormsgpack.packb([payload]))

    async with open_graph(settings, None) as graph:
        with pytest.raises(CheckpointDataRefused, match=r"type os\.system"):
            await graph.aget_state(THREAD)
        assert len((await graph.aget_state(other)).values["messages"]) == 2

    assert not marker.exists()


async def test_an_altered_encrypted_blob_is_refused(settings: Settings, database_url: str) -> None:
    async with open_graph(settings, KEY) as graph:
        await say(graph, "hello there")
    blob = newest_blob(database_url, "t", "messages")
    plant(database_url, "t", "messages", "msgpack+aes", blob[:-1] + bytes([blob[-1] ^ 1]))

    async with open_graph(settings, KEY) as graph:
        with pytest.raises(ConfigError, match="or the stored data was altered"):
            await graph.aget_state(THREAD)
