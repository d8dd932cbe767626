"""Each node built by its factory and called directly with a Runtime, an InMemoryStore and a fake model."""

from __future__ import annotations

from typing import Any

import httpx
import openai
import pytest
from langchain_core.messages import (
    AIMessage,
    AnyMessage,
    HumanMessage,
    RemoveMessage,
    SystemMessage,
    ToolMessage,
)
from langchain_core.outputs import ChatResult
from langgraph.graph.message import add_messages
from langgraph.runtime import Runtime
from langgraph.store.memory import InMemoryStore
from pydantic import ValidationError

from nodes.config import GraphConfig
from nodes.entity_index import index_entity
from nodes.extract_entities import request_extraction, upsert_entities
from nodes.load_memory import make_load_memory
from nodes.memory import EntityRecord, entity_key
from nodes.models import is_transient_model_error
from nodes.namespaces import entity_namespace
from nodes.prompts import (
    DEFAULT_INSTRUCTIONS,
    EXTRACTION_SYSTEM,
    MEMORY_HEADER,
    REPAIR_REQUEST,
    SUMMARY_HEADER,
    SUMMARY_SYSTEM,
)
from nodes.reduce_history import make_reduce_history
from nodes.reduction import messages_to_fold
from nodes.respond import build_prompt, make_respond
from nodes.state import Context, State, newest_human
from nodes.summarize import MAX_SUMMARY_CHARS, make_summarize, summary_request
from nodes.tokens import count_tokens, text_of
from tests.support.fakes import ACME, BOB, RecordingChatModel, connection_error, fake, tool_call

LONG = "word " * 80  # ~100 tokens
T0 = "2026-01-01T00:00:00+00:00"
REPAIR_PREFIX = REPAIR_REQUEST.split("{error}")[0]


def runtime(store: InMemoryStore | None = None, user_id: str | None = None) -> Runtime[Context]:
    return Runtime(context=Context(user_id=user_id), store=store)


def state(messages: list[AnyMessage], **values: Any) -> State:
    return {"messages": messages, **values}  # type: ignore[typeddict-item]


def stored_record(value: str, *, type: str = "ORG", mentions: int = 1, context: str = "") -> EntityRecord:
    return EntityRecord(
        type=type,
        value=value,
        first_seen=T0,
        last_seen=T0,
        mentions=mentions,
        contexts=[context] if context else [],
        source_message_ids=["old"],
        threads=["t0"],
    )


async def put_records(store: InMemoryStore, user_id: str, *records: EntityRecord) -> None:
    """Store and index records the way extraction does, so load_memory can find them by name."""
    for record in records:
        key = entity_key(record.type, record.value)
        await store.aput(entity_namespace(user_id), key, record.model_dump(), index=False)
        await index_entity(store, user_id, key, [record.value, *record.aliases])


def conversation(turns: int) -> list[AnyMessage]:
    """`turns` long human/AI exchanges followed by a short newest human message."""
    messages: list[AnyMessage] = []
    for n in range(turns):
        messages += [HumanMessage(f"q{n} {LONG}", id=f"h{n}"), AIMessage(f"a{n} {LONG}", id=f"a{n}")]
    return [*messages, HumanMessage("newest question", id="newest")]


# --- state helper ----------------------------------------------------------------------------------


def test_newest_human_is_the_last_human_message() -> None:
    messages: list[AnyMessage] = [HumanMessage("one", id="h1"), AIMessage("r"), HumanMessage("two", id="h2")]
    assert newest_human([*messages, AIMessage("reply")]) is messages[2]
    assert newest_human([AIMessage("only ai")]) is None
    assert newest_human([]) is None


# --- load_memory -----------------------------------------------------------------------------------


async def test_load_memory_ranks_stored_entities_against_the_newest_message() -> None:
    store = InMemoryStore()
    await put_records(
        store,
        "u1",
        stored_record("Paris", type="LOC", mentions=7),
        stored_record("Acme", mentions=1, context="works at Acme"),
        stored_record("Python", type="TECH", mentions=3),
    )
    await put_records(store, "someone-else", stored_record("Globex", mentions=50))
    messages: list[AnyMessage] = [
        HumanMessage("tell me about Paris", id="h1"),
        AIMessage("ok", id="a1"),
        HumanMessage("How is Acme doing?", id="h2"),
    ]
    update = await make_load_memory(memory_tokens=400)(state(messages), runtime=runtime(store, user_id="u1"))
    assert update["memory_keys"] == ["Acme", "Paris", "Python"]
    assert update["memory_context"].startswith(MEMORY_HEADER)
    assert "works at Acme" in update["memory_context"]
    assert "Globex" not in update["memory_context"]


async def test_load_memory_respects_memory_tokens() -> None:
    store = InMemoryStore()  # fewer entities than the recent window: every one is a candidate
    await put_records(store, "u1", *(stored_record(f"Company {n:02d}", mentions=n) for n in range(15)))
    await put_records(store, "u1", stored_record("Acme", mentions=0))
    update = await make_load_memory(memory_tokens=40)(
        state([HumanMessage("news from Acme?", id="h1")]), runtime=runtime(store, user_id="u1")
    )
    keys = update["memory_keys"]
    assert keys[0] == "Acme"  # relevance beats mentions when room is short
    assert 1 < len(keys) < 16
    assert keys[1:] == [f"Company {n:02d}" for n in range(14, 14 - len(keys) + 1, -1)]
    assert len(update["memory_context"]) // 4 <= 40


async def test_load_memory_with_no_budget_no_entities_or_no_store_is_empty() -> None:
    store = InMemoryStore()
    await put_records(store, "u1", stored_record("Acme"))
    messages = [HumanMessage("Acme?", id="h1")]
    empty = {"memory_context": "", "memory_keys": [], "memory_trace": [], "review_memory": False}
    load = make_load_memory(memory_tokens=400)
    no_budget = await make_load_memory(memory_tokens=0)(state(messages), runtime=runtime(store, user_id="u1"))
    assert no_budget == {**empty, "user_id": "u1"}
    assert await load(state(messages), runtime=runtime(store, user_id="nobody")) == {
        **empty,
        "user_id": "nobody",
    }
    assert await load(state(messages), runtime=runtime(None, user_id="u1")) == {**empty, "user_id": "u1"}


async def test_load_memory_finds_the_named_entity_among_many() -> None:
    store = InMemoryStore()
    await put_records(store, "u1", *(stored_record(f"Filler {n:03d}") for n in range(200)))
    await put_records(store, "u1", stored_record("Acme"))
    await put_records(store, "u1", *(stored_record(f"Filler {n:03d}") for n in range(200, 400)))
    update = await make_load_memory(memory_tokens=400)(
        state([HumanMessage("Acme?", id="h1")]), runtime=runtime(store, user_id="u1")
    )
    assert update["memory_keys"][:1] == ["Acme"]


# --- respond ---------------------------------------------------------------------------------------


def test_build_prompt_has_instructions_memory_and_summary_then_the_window() -> None:
    config = GraphConfig(instructions="Be terse.", prompt_tokens=3000)
    messages = conversation(1)
    prompt = build_prompt(
        state(messages, memory_context=f"{MEMORY_HEADER}\n- Acme (org)", summary="User likes tea."), config
    )
    assert isinstance(prompt[0], SystemMessage)
    system = text_of(prompt[0])
    assert system.startswith("Be terse.")
    assert f"{MEMORY_HEADER}\n- Acme (org)" in system
    assert f"{SUMMARY_HEADER}\nUser likes tea." in system
    assert [m.id for m in prompt[1:]] == [m.id for m in messages]
    assert count_tokens(prompt) <= 3000


def test_build_prompt_without_memory_or_summary_is_just_the_instructions() -> None:
    prompt = build_prompt(state([HumanMessage("hi", id="h1")]), GraphConfig())
    assert text_of(prompt[0]) == DEFAULT_INSTRUCTIONS
    assert [m.id for m in prompt[1:]] == ["h1"]


@pytest.mark.parametrize("prompt_tokens", [800, 1500, 3000])
def test_build_prompt_stays_under_prompt_tokens_and_keeps_the_newest_message(prompt_tokens: int) -> None:
    messages = conversation(30)
    summary = "s " * 300
    memory = f"{MEMORY_HEADER}\n" + "- thing\n" * 40
    prompt = build_prompt(
        state(messages, summary=summary, memory_context=memory), GraphConfig(prompt_tokens=prompt_tokens)
    )
    assert count_tokens(prompt) <= prompt_tokens
    assert prompt[-1].id == "newest"
    assert text_of(prompt[-1]) == "newest question"
    assert isinstance(prompt[1], HumanMessage)
    assert 1 < len(prompt) < len(messages) + 1  # older turns were dropped, not all of them


def test_build_prompt_with_large_memory_and_summary_still_fits_and_shows_the_user_message() -> None:
    memory = f"{MEMORY_HEADER}\n" + "- a remembered thing\n" * 70  # ~400 tokens
    summary = "s" * MAX_SUMMARY_CHARS
    messages = [HumanMessage("what is my name?", id="h1")]
    config = GraphConfig(prompt_tokens=512)
    prompt = build_prompt(state(messages, summary=summary, memory_context=memory), config)
    assert text_of(prompt[-1]) == "what is my name?"
    assert count_tokens(prompt) <= 512


async def test_respond_sends_build_prompt_to_the_model_and_returns_its_reply() -> None:
    model = fake(AIMessage("the answer", id="r1"))
    current = state(conversation(2), summary="earlier stuff", memory_context=f"{MEMORY_HEADER}\n- Acme")
    config = GraphConfig(prompt_tokens=1000)
    update = await make_respond(model, config)(current, runtime=runtime(user_id="u1"))
    assert [m.id for m in update["messages"]] == ["r1"]
    assert len(model.prompts) == 1
    assert model.prompts[0] == build_prompt(current, config)


# --- summarize -------------------------------------------------------------------------------------


async def test_summarize_under_budget_does_not_call_the_model() -> None:
    model = fake()  # would raise StopIteration if called
    update = await make_summarize(model, working_set_tokens=1500)(state(conversation(1)), runtime=runtime())
    assert update == {}
    assert model.prompts == []


async def test_summarize_folds_the_oldest_messages_into_the_summary() -> None:
    model = fake("  merged summary  ")
    messages = conversation(8)
    update = await make_summarize(model, working_set_tokens=600)(
        state(messages, summary="PREVIOUS SUMMARY"), runtime=runtime()
    )
    expected = messages_to_fold(messages, 600)
    assert expected  # the case is really over budget
    assert update == {"summary": "merged summary", "summarized_ids": [m.id for m in expected]}
    assert "newest" not in update["summarized_ids"]
    [prompt] = model.prompts
    assert prompt[0] == SystemMessage(content=SUMMARY_SYSTEM)
    body = text_of(prompt[1])
    assert "PREVIOUS SUMMARY" in body
    assert all(text_of(m) in body for m in expected)
    assert "newest question" not in body


async def test_summarize_caps_the_summary_length() -> None:
    model = fake("x" * (MAX_SUMMARY_CHARS * 2))
    update = await make_summarize(model, working_set_tokens=600)(state(conversation(8)), runtime=runtime())
    assert len(update["summary"]) == MAX_SUMMARY_CHARS


async def test_summarize_never_loses_the_previous_summary_on_an_empty_reply() -> None:
    model = fake("   ")
    update = await make_summarize(model, working_set_tokens=600)(
        state(conversation(8), summary="User is Ada; works at Acme."), runtime=runtime()
    )
    assert not update.get("summarized_ids") or update.get("summary")


def test_summary_request_lists_the_transcript_and_marks_a_missing_summary() -> None:
    call = {"name": "lookup", "args": {}, "id": "c1", "type": "tool_call"}
    stale: list[AnyMessage] = [
        HumanMessage("I like tea", id="h1"),
        AIMessage("", tool_calls=[call], id="a1"),
        ToolMessage("tea facts", tool_call_id="c1", id="t1"),
    ]
    system, human = summary_request(None, stale)
    assert system == SystemMessage(content=SUMMARY_SYSTEM)
    body = text_of(human)
    assert "Previous summary:\n(none)" in body
    assert body.endswith("New messages:\nhuman: I like tea\ntool: tea facts")  # empty AI text left out


# --- reduce_history --------------------------------------------------------------------------------


async def test_reduce_history_removes_exactly_the_folded_messages() -> None:
    messages = conversation(3)
    folded = ["h0", "a0", "h1", "gone-already"]
    update = await make_reduce_history()(state(messages, summarized_ids=folded), runtime=runtime())
    assert update["summarized_ids"] == []
    assert all(isinstance(m, RemoveMessage) for m in update["messages"])
    assert [m.id for m in update["messages"]] == ["h0", "a0", "h1"]
    remaining = add_messages(messages, update["messages"])
    assert [m.id for m in remaining] == ["a1", "h2", "a2", "newest"]


async def test_reduce_history_without_folded_ids_changes_nothing_but_counts_the_turn() -> None:
    node = make_reduce_history()
    assert await node(state(conversation(2)), runtime=runtime()) == {"turns": 1}
    assert await node(state(conversation(2), summarized_ids=[], turns=4), runtime=runtime()) == {"turns": 5}


# --- extraction helpers ----------------------------------------------------------------------------


async def test_request_extraction_returns_entities_from_the_tool_call() -> None:
    model = fake(tool_call({"entities": [ACME, {"type": "ORG", "value": ""}]}))
    result = await request_extraction(model, "I work at Acme Corp.")
    assert result["entities"] == [ACME]
    assert len(result["dropped"]) == 1
    assert result["error"] is None
    [prompt] = model.prompts
    assert prompt[0] == SystemMessage(content=EXTRACTION_SYSTEM)
    assert "I work at Acme Corp." in text_of(prompt[1])


@pytest.mark.parametrize(
    "malformed",
    [tool_call({"entities": "Acme"}), tool_call({"things": []}), AIMessage("Acme is an org")],
)
async def test_request_extraction_repairs_once(malformed: AIMessage) -> None:
    model = fake(malformed, tool_call({"entities": [BOB]}))
    result = await request_extraction(model, "Bob says hi")
    assert result == {"entities": [BOB], "dropped": [], "error": None}
    first, second = model.prompts
    assert second[-1] == first[-1]  # the user's words stay the last message
    assert len(second) == len(first)
    assert REPAIR_PREFIX in text_of(second[0])


async def test_request_extraction_gives_up_after_one_repair() -> None:
    model = fake(
        tool_call({"entities": "x"}),
        AIMessage("still no tool call"),
        tool_call({"entities": [BOB]}),
    )
    result = await request_extraction(model, "Bob says hi")
    assert result["entities"] == []
    assert result["error"]
    assert len(model.prompts) == 2


async def test_request_extraction_records_model_errors_instead_of_failing_the_turn() -> None:
    class Failing(RecordingChatModel):
        def _generate(self, *args: Any, **kwargs: Any) -> ChatResult:
            raise connection_error()

    result = await request_extraction(Failing(messages=iter(())), "hi")
    assert result == {"entities": [], "dropped": [], "error": "model failed: APIConnectionError"}


async def test_upsert_entities_writes_once_per_message_and_counts_new_messages() -> None:
    store = InMemoryStore()
    namespace = entity_namespace("u1")
    duplicate = {**ACME, "value": "ACME"}
    written = await upsert_entities(
        store, "u1", [ACME, BOB, duplicate], message_id="m1", thread_id="t1", now=T0
    )
    assert written == 2
    items = {item.key: item.value for item in await store.asearch(namespace)}
    assert set(items) == {"ORG:acme", "PERSON:bob"}
    assert items["ORG:acme"]["mentions"] == 1

    assert await upsert_entities(store, "u1", [ACME, BOB], message_id="m1", thread_id="t1", now=T0) == 0
    assert (await store.aget(namespace, "ORG:acme")).value == items["ORG:acme"]  # type: ignore[union-attr]

    assert await upsert_entities(store, "u1", [duplicate], message_id="m2", thread_id="t2", now=T0) == 1
    acme = EntityRecord.model_validate((await store.aget(namespace, "ORG:acme")).value)  # type: ignore[union-attr]
    assert (acme.mentions, acme.aliases, acme.threads) == (2, ["ACME"], ["t1", "t2"])
    assert await store.asearch(entity_namespace("u2")) == []


async def test_upsert_entities_rejects_invalid_candidates() -> None:
    with pytest.raises(ValidationError):
        await upsert_entities(
            InMemoryStore(), "u1", [{"type": "ORG"}], message_id="m1", thread_id="t1", now=T0
        )


# --- which model errors are worth a retry ------------------------------------------------------------

REQUEST = httpx.Request("POST", "http://model/v1/chat/completions")


@pytest.mark.parametrize(
    ("error", "transient"),
    [
        (openai.APIConnectionError(request=REQUEST), True),
        (openai.APITimeoutError(request=REQUEST), True),
        (openai.RateLimitError("slow down", response=httpx.Response(429, request=REQUEST), body=None), True),
        (openai.InternalServerError("boom", response=httpx.Response(500, request=REQUEST), body=None), True),
        (
            openai.APIStatusError("unavailable", response=httpx.Response(503, request=REQUEST), body=None),
            True,
        ),
        (httpx.ConnectError("refused", request=REQUEST), True),
        (openai.BadRequestError("bad", response=httpx.Response(400, request=REQUEST), body=None), False),
        (openai.AuthenticationError("key", response=httpx.Response(401, request=REQUEST), body=None), False),
        (ValueError("schema"), False),
        (KeyError("x"), False),
    ],
)
def test_is_transient_model_error(error: Exception, transient: bool) -> None:
    assert is_transient_model_error(error) is transient
