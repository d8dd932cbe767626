"""Private upstream details convomem relies on, pinned without a database: each test fails when the
installed langgraph / langgraph-checkpoint-postgres / langchain-core changes the detail it names.

A failure here means: read the new upstream code, adapt the convomem code named in the test's docstring
(or drop the reliance), then update the pinned copy. The database-backed pins are in
tests/integration/test_upstream_pins.py.
"""

from __future__ import annotations

import ast
import asyncio
import importlib.util
import inspect
import re
from pathlib import Path
from typing import Annotated, Any, cast

from langchain_core.language_models import BaseChatModel
from langchain_core.messages import AIMessage, AnyMessage, HumanMessage, RemoveMessage
from langchain_core.runnables import RunnableConfig
from langchain_core.tools import tool
from langgraph.channels.delta import DeltaChannel
from langgraph.checkpoint.postgres import aio
from langgraph.checkpoint.postgres.aio import AsyncPostgresSaver
from langgraph.checkpoint.postgres.base import (
    PRUNE_DELTA_THREADS_SQL,
    BasePostgresSaver,
    _build_delta_stage1_sql,
    _keep_latest,
)
from langgraph.graph import START, StateGraph
from langgraph.graph.message import _messages_delta_reducer, add_messages
from langgraph.prebuilt import ToolNode, ToolRuntime
from langgraph.pregel import Pregel
from langgraph.store.base.batch import AsyncBatchedBaseStore
from langgraph.types import Send
from psycopg.types.json import Jsonb
from typing_extensions import TypedDict

from bench.fake_model import LANGMEM_SUMMARY_REQUESTS
from checkpoint.delta import DELTA_CHANNELS_SQL
from checkpoint.persistence import _stop_batch_task
from checkpoint.saver import SELECT_SQL, ConvomemSaver
from checkpoint.unloadable import SUSPECTS_SQL


def flat(sql: str) -> str:
    """SQL with every run of whitespace made one space, for comparing texts laid out differently."""
    return " ".join(sql.split())


# --------------------------------------------------------------------------- the load query


OUR_BLOB_LOOKUP = """\
        from jsonb_each_text(checkpoint -> 'channel_versions') v
        cross join lateral (
            select b.channel, b.type, b.blob from checkpoint_blobs b
            where b.thread_id = checkpoints.thread_id
                and b.checkpoint_ns = checkpoints.checkpoint_ns
                and b.channel = v.key
                and b.version = v.value
            limit 1
        ) bl
"""
UPSTREAM_BLOB_JOIN = """\
        from jsonb_each_text(checkpoint -> 'channel_versions')
        inner join checkpoint_blobs bl
            on bl.thread_id = checkpoints.thread_id
            and bl.checkpoint_ns = checkpoints.checkpoint_ns
            and bl.channel = jsonb_each_text.key
            and bl.version = jsonb_each_text.value
"""
"""The part of upstream's SELECT_SQL that checkpoint/saver.py's copy changes (its documented change)."""


def test_select_sql_is_upstreams_but_for_the_per_channel_blob_lookup() -> None:
    """checkpoint/saver.py SELECT_SQL is a copy of upstream's with one documented change."""
    assert ConvomemSaver.SELECT_SQL is SELECT_SQL
    assert SELECT_SQL.count(OUR_BLOB_LOOKUP) == 1
    assert SELECT_SQL.replace(OUR_BLOB_LOOKUP, UPSTREAM_BLOB_JOIN) == BasePostgresSaver.SELECT_SQL


def test_get_and_list_read_the_class_select_sql() -> None:
    """Overriding the SELECT_SQL class attribute changes what aget_tuple and alist run (and their WHERE
    clauses are appended to it), and the loader reads the two aggregated columns by name."""
    assert "self.SELECT_SQL + where," in inspect.getsource(AsyncPostgresSaver.aget_tuple)
    assert 'self.SELECT_SQL + where + " ORDER BY checkpoint_id DESC"' in inspect.getsource(
        AsyncPostgresSaver.alist
    )
    loader = inspect.getsource(AsyncPostgresSaver._load_checkpoint_tuple)
    assert 'value["channel_values"]' in loader and 'value["pending_writes"]' in loader


# --------------------------------------------------------------------------- the saver-wide lock


def test_saver_lock_is_an_asyncio_lock_only_entered_by_cursor() -> None:
    """ConvomemSaver.__init__ swaps `self.lock` for a ThreadOrderLock (async context manager only), and
    bench/drivers.py puts an asyncio.Lock back: upstream must declare it an asyncio.Lock, make it in
    __init__, and use it nowhere but as `async with self.lock` at the top of `_cursor()`."""
    declared = AsyncPostgresSaver.__annotations__["lock"]
    assert (eval(declared, vars(aio)) if isinstance(declared, str) else declared) is asyncio.Lock
    uses = sorted(line.strip() for line in inspect.getsource(aio).splitlines() if "self.lock" in line)
    assert uses == [
        "async with self.lock, _ainternal.get_connection(self.conn) as conn:",
        "self.lock = asyncio.Lock()",
    ]
    assert "async with self.lock," in inspect.getsource(AsyncPostgresSaver._cursor)
    assert "self.lock" not in inspect.getsource(BasePostgresSaver)


def test_saves_take_the_cursor_in_their_own_coroutine() -> None:
    """checkpoint/ordering.py marks a save with a context variable that ThreadOrderLock reads when
    `_cursor()` takes the lock: aput and aput_writes must open the cursor themselves, not in a thread or
    another task (their serialization runs in a thread, but before the cursor)."""
    for method in (AsyncPostgresSaver.aput, AsyncPostgresSaver.aput_writes):
        source = inspect.getsource(method)
        assert source.count("async with self._cursor(pipeline=True) as cur:") == 1
        assert "create_task" not in source and "run_coroutine_threadsafe" not in source


def test_cursor_takes_only_the_pipeline_keyword() -> None:
    """checkpoint/maintenance.py and checkpoint/unloadable.py call the private `self._cursor()` with no
    arguments, as an async context manager."""
    signature = inspect.signature(AsyncPostgresSaver._cursor)
    assert [(p.name, p.kind, p.default) for p in signature.parameters.values()] == [
        ("self", inspect.Parameter.POSITIONAL_OR_KEYWORD, inspect.Parameter.empty),
        ("pipeline", inspect.Parameter.KEYWORD_ONLY, False),
    ]
    assert inspect.isasyncgenfunction(inspect.unwrap(AsyncPostgresSaver._cursor))


# --------------------------------------------------------------------------- naming an unloadable row


def test_suspects_are_read_with_upstreams_conditions_and_order() -> None:
    """checkpoint/unloadable.py SUSPECTS_SQL re-reads what a failed get or list read: the conditions of
    upstream's private `_search_where` and aget_tuple, newest first."""
    config: RunnableConfig = {"configurable": {"thread_id": "t", "checkpoint_ns": "ns", "checkpoint_id": "c"}}
    before: RunnableConfig = {"configurable": {"checkpoint_id": "b"}}
    where, params = BasePostgresSaver()._search_where(config, {"k": "v"}, before)
    assert [flat(part) for part in where.removeprefix("WHERE ").split(" AND ")] == [
        "thread_id = %s",
        "checkpoint_ns = %s",
        "checkpoint_id = %s",
        "metadata @> %s",
        "checkpoint_id < %s",
    ]
    assert params[:3] == ["t", "ns", "c"] and params[4] == "b"
    assert isinstance(params[3], Jsonb) and params[3].obj == {"k": "v"}
    ours = flat(SUSPECTS_SQL)
    for condition in (
        "thread_id = %(thread)s",
        "checkpoint_ns = %(ns)s",
        "checkpoint_id = %(id)s",
        "metadata @> %(filter)s::jsonb",
        "checkpoint_id < %(before)s",
    ):
        assert condition in ours
    assert "ORDER BY checkpoint_id DESC LIMIT" in ours
    get = inspect.getsource(AsyncPostgresSaver.aget_tuple)
    assert 'checkpoint_ns = config["configurable"].get("checkpoint_ns", "")' in get
    assert '"WHERE thread_id = %s AND checkpoint_ns = %s AND checkpoint_id = %s"' in get
    assert '"WHERE thread_id = %s AND checkpoint_ns = %s ORDER BY checkpoint_id DESC LIMIT 1"' in get


# --------------------------------------------------------------------------- DeltaChannel storage and prune

UPSTREAM_DELTA_THREADS_SQL = """
SELECT thread_id FROM checkpoints
WHERE thread_id = ANY(%s) AND (
    metadata ? 'counters_since_delta_snapshot'
    OR metadata ? 'delta_writes_versioned'
)
UNION
SELECT c.thread_id
FROM checkpoints c
CROSS JOIN LATERAL jsonb_each(c.checkpoint -> 'channel_values') AS v
CROSS JOIN LATERAL (
    SELECT 1 FROM checkpoint_blobs b
    WHERE b.thread_id = c.thread_id
    AND b.checkpoint_ns = c.checkpoint_ns
    AND b.channel = v.key
    AND b.version = c.checkpoint -> 'channel_versions' ->> v.key
    LIMIT 1
) AS snapshot
WHERE c.thread_id = ANY(%s) AND v.value = 'true'::jsonb
"""
"""What checkpoint/delta.py DELTA_CHANNELS_SQL mirrors (per channel instead of per thread). Threads
marked `delta_writes_versioned` (LangGraph.js) are left to upstream's prune, which refuses them."""


def test_delta_threads_are_told_apart_as_upstreams_prune_does() -> None:
    """checkpoint/delta.py finds a thread's DeltaChannels with the tests of upstream's private
    PRUNE_DELTA_THREADS_SQL: the metadata counters, or an inline `true` with a blob at its version."""
    assert flat(PRUNE_DELTA_THREADS_SQL) == flat(UPSTREAM_DELTA_THREADS_SQL)
    ours = flat(DELTA_CHANNELS_SQL)
    assert "c.metadata -> 'counters_since_delta_snapshot'" in ours
    assert "v.value = 'true'::jsonb" in ours
    assert "b.version = c.checkpoint -> 'channel_versions' ->> v.key" in ours


UPSTREAM_STAGE1_SQL = (
    "SELECT checkpoint_id, parent_checkpoint_id, "
    "checkpoint -> 'channel_versions' ->> %s AS ver_0, "
    "EXISTS (SELECT 1 FROM checkpoint_blobs b0 "
    "WHERE b0.thread_id = checkpoints.thread_id "
    "AND b0.checkpoint_ns = checkpoints.checkpoint_ns "
    "AND b0.channel = %s "
    "AND b0.version = checkpoint -> 'channel_versions' ->> %s "
    "AND b0.type <> 'empty') AS hb_0, "
    "checkpoint -> 'channel_values' -> %s AS inline_0 "
    "FROM checkpoints WHERE thread_id = %s AND checkpoint_ns = %s"
)


def test_a_stored_value_ends_the_delta_walk_as_upstreams_does() -> None:
    """checkpoint/delta.py `_stored` (which ends DELTA_CHAIN_SQL's walk) is the seed test of upstream's
    private `_build_delta_stage1_sql`: a non-null inline value, or a non-'empty' blob at the version."""
    assert _build_delta_stage1_sql(["messages"], paged=False) == UPSTREAM_STAGE1_SQL


def test_keep_latest_reads_one_repeatable_read_snapshot() -> None:
    """Upstream's keep_latest (private `_keep_latest`) opens with SET TRANSACTION ISOLATION LEVEL
    REPEATABLE READ: checkpoint/retention.py sets that same level first (a savepoint may only repeat
    it), and checkpoint/maintenance.py `_keep_delta_chains` prunes on the same kind of snapshot."""
    statements = _keep_latest("t")
    assert next(statements) == ("SET TRANSACTION ISOLATION LEVEL REPEATABLE READ", (), False)
    statements.close()


def test_blob_upsert_keeps_the_first_value() -> None:
    """checkpoint/serde.py SealInlineValues re-lists sealed channels in `new_versions`, relying on the
    blob insert ignoring a (thread, namespace, channel, version) already stored."""
    assert "ON CONFLICT (thread_id, checkpoint_ns, channel, version) DO NOTHING" in flat(
        AsyncPostgresSaver.UPSERT_CHECKPOINT_BLOBS_SQL
    )


# --------------------------------------------------------------------------- the store's batch task


def test_store_keeps_its_batch_task_in_task() -> None:
    """checkpoint/persistence.py `_stop_batch_task` cancels `store._task` (the integration pin checks
    that this ends it); upstream must keep the task there and make it only in `_ensure_task`."""
    assert "_task" in AsyncBatchedBaseStore.__slots__
    assert "self._task = self._loop.create_task(" in inspect.getsource(AsyncBatchedBaseStore._ensure_task)


def test_a_store_batch_runs_in_one_pipeline_reads_before_writes() -> None:
    """nodes/memory_batch.py counts one round trip and one transaction per `abatch`: AsyncPostgresStore
    runs the whole batch in one `_cursor(pipeline=True)`, gets and searches before puts (the behaviour is
    pinned on Postgres in tests/integration/test_upstream_pins.py)."""
    from langgraph.store.postgres.aio import AsyncPostgresStore

    source = inspect.getsource(AsyncPostgresStore._execute_batch)
    assert source.count("self._cursor(") == 1 and "self._cursor(pipeline=True)" in source
    assert source.index("GetOp in grouped_ops") < source.index("PutOp in grouped_ops")
    assert source.index("SearchOp in grouped_ops") < source.index("PutOp in grouped_ops")
    assert "await self._execute_batch(" in inspect.getsource(AsyncPostgresStore.abatch)


# --------------------------------------------------------------------------- bench/


def test_messages_delta_reducer_is_a_delta_batch_reducer() -> None:
    """bench/baselines.py declares its DeltaChannel baseline with the private `_messages_delta_reducer`
    (langgraph.graph.message): a batching-invariant reducer of message lists."""
    reducer = cast(Any, _messages_delta_reducer)
    first: list[AnyMessage] = [HumanMessage("a", id="1"), AIMessage("b", id="2")]
    later: list[AnyMessage] = [AIMessage("b2", id="2"), RemoveMessage(id="1")]
    once = reducer([], [first, later])
    assert [(m.id, m.content) for m in once] == [("2", "b2")]
    assert reducer(reducer([], [first]), [later]) == once
    DeltaChannel(_messages_delta_reducer)


def test_chat_model_hooks_the_bench_model_overrides() -> None:
    """bench/fake_model.py implements langchain-core's underscore hooks (the documented way to write a
    chat model): `_generate` and `_llm_type` are abstract, `_agenerate` and `_astream` are overridable."""
    assert BaseChatModel.__abstractmethods__ == frozenset({"_generate", "_llm_type"})
    for hook in (BaseChatModel._generate, BaseChatModel._agenerate, BaseChatModel._astream):
        parameters = list(inspect.signature(hook).parameters)
        assert parameters[:4] == ["self", "messages", "stop", "run_manager"] and parameters[-1] == "kwargs"
    assert re.search(r"def _llm_type\(self\) -> str", inspect.getsource(BaseChatModel))


def test_langmem_summary_prompts_end_with_the_requests_the_bench_model_knows() -> None:
    """bench/fake_model.py tells LangMem's summary requests from reply requests by the last message of
    LangMem's default summary prompts (langmem.short_term.summarization)."""
    from langmem.short_term import summarization

    prompts = (summarization.DEFAULT_INITIAL_SUMMARY_PROMPT, summarization.DEFAULT_EXISTING_SUMMARY_PROMPT)
    for prompt, request in zip(prompts, LANGMEM_SUMMARY_REQUESTS, strict=True):
        last = prompt.format_messages(messages=[], existing_summary="so far")[-1]
        assert str(last.content).startswith(request)


async def test_store_batches_run_queued_ops_through_the_instance_abatch() -> None:
    """bench/node_counts.py charges store work to the nodes that queued it: it wraps `put_nowait` of the
    private `_aqueue` (AsyncBatchedBaseStore queues (future, op) pairs there) and the instance's
    `abatch`, which the background batch task calls with those ops."""
    batches: list[list[Any]] = []

    class Store(AsyncBatchedBaseStore):
        def batch(self, ops: Any) -> list[Any]:
            raise NotImplementedError

        async def abatch(self, ops: Any) -> list[Any]:
            raise NotImplementedError

    async def recording(ops: Any) -> list[Any]:
        batches.append(list(ops))
        return [None for _ in batches[-1]]

    store = Store()
    queue = cast(Any, store)._aqueue
    assert isinstance(queue, asyncio.Queue)
    queued: list[Any] = []
    put = queue.put_nowait
    queue.put_nowait = lambda item: (queued.append(item[1]), put(item))[1]
    cast(Any, store).abatch = recording
    try:
        assert await store.aget(("a",), "k") is None
        assert len(queued) == 1 and batches == [queued]
    finally:
        await _stop_batch_task(cast(Any, store))


# --------------------------------------------------------------------------- graphs/


class Counter(TypedDict):
    count: int


def test_a_compiled_graph_is_rebuilt_from_its_attributes_as_pregel_copy_does() -> None:
    """graphs/conversation.py `compile_graph` makes its TurnGraph subclass from a compiled graph's
    `__dict__` (less `__orig_class__`), as upstream's Pregel.copy does: every attribute must still be a
    constructor argument."""
    body = [line.strip() for line in inspect.getsource(Pregel.copy).splitlines()[1:] if line.strip()]
    assert body == [
        'attrs = {k: v for k, v in self.__dict__.items() if k != "__orig_class__"}',
        "attrs.update(update or {})",
        "return self.__class__(**attrs)",
    ]
    builder = StateGraph(Counter)
    builder.add_node("step", lambda state: {"count": state["count"] + 1})
    builder.add_edge(START, "step")
    compiled = builder.compile(name="pin")
    attrs = {key: value for key, value in compiled.__dict__.items() if key != "__orig_class__"}
    rebuilt = type(compiled)(**attrs)
    assert rebuilt.name == "pin" and rebuilt.invoke({"count": 1}) == {"count": 2}


def test_the_server_marks_a_run_whose_request_gave_a_context() -> None:
    """graphs/run_requests.py checks a context strictly only when langgraph-api's private
    `__context_provided__` marker is in the run's configurable: create_valid_run must set it (when the
    request has a context) before Runs.put hands the run to the auth handlers."""
    spec = importlib.util.find_spec("langgraph_api.models.run")  # read, not imported: it wants a server
    assert spec is not None and spec.origin is not None
    text = Path(spec.origin).read_text(encoding="utf-8")
    [function] = [
        node
        for node in ast.walk(ast.parse(text))
        if isinstance(node, ast.AsyncFunctionDef) and node.name == "create_valid_run"
    ]
    source = ast.get_source_segment(text, function) or ""
    marked = source.index('configurable["__context_provided__"] = True')
    assert source.rindex("if context:", 0, marked) < marked < source.index("Runs.put(")


def test_legacy_servers_get_max_tokens() -> None:
    """langchain-openai renames max_tokens to max_completion_tokens in `_get_request_payload` (private);
    llama-cpp-python's server knows only max_tokens, so the local model's payload renames it back."""
    from langchain_core.messages import HumanMessage

    from nodes.models import make_chat_model

    plain = make_chat_model(model="m", base_url="http://127.0.0.1:9/v1", api_key=None)
    legacy = make_chat_model(
        model="m", base_url="http://127.0.0.1:9/v1", api_key=None, legacy_max_tokens=True
    )
    upstream = plain._get_request_payload([HumanMessage("hi")], max_tokens=7)
    ours = legacy._get_request_payload([HumanMessage("hi")], max_tokens=7)
    assert upstream.get("max_completion_tokens") == 7 and "max_tokens" not in upstream
    assert ours.get("max_tokens") == 7 and "max_completion_tokens" not in ours


class _ToolPinState(TypedDict):
    messages: Annotated[list[AnyMessage], add_messages]
    user_id: str


@tool
def _whoami(runtime: ToolRuntime[Any, Any]) -> str:
    """Who is talking."""
    return str(runtime.state["user_id"])


async def test_a_tool_sent_a_list_of_calls_reads_the_graphs_state_in_its_runtime() -> None:
    """nodes.tool_loop.route_after_respond sends each call as `Send("tools", [call])` (ToolNode's
    "tool_calls" input) and nodes.memory_tools reads the run's user from `ToolRuntime.state`, which
    ToolNode then builds from the graph's channels (private CONFIG_KEY_READ). If this fails, send
    ToolCallWithContext with the state instead."""
    call = {"name": "_whoami", "args": {}, "id": "c1", "type": "tool_call"}
    builder = StateGraph(_ToolPinState)
    builder.add_node("start", lambda state: {})
    builder.add_node("tools", ToolNode([_whoami]))
    builder.add_edge(START, "start")
    builder.add_conditional_edges("start", lambda state: [Send("tools", [call])], ["tools"])
    result = await builder.compile().ainvoke({"messages": [HumanMessage("hi")], "user_id": "ann"})
    assert result["messages"][-1].content == "ann"


def test_the_server_shows_the_message_of_a_failed_run_only_for_builtin_kinds() -> None:
    """langgraph-api's run error serializer (langgraph_api.serde.default, private) keeps the message of
    ValueError and a few other built-ins and masks the rest: ReplyNotValid is a ValueError so a failed
    run's caller reads the same words as the CLI."""
    from langgraph_api.serde import default

    from nodes.errors import ConvomemError, ReplyNotValid

    assert default(ReplyNotValid("off the schema"))["message"] == "off the schema"
    assert default(ConvomemError("masked"))["message"] != "masked"
