"""The fake OpenAI server, driven through the real ``langchain_openai.ChatOpenAI`` client over HTTP."""

from __future__ import annotations

import base64
import json
import signal
import struct
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import openai
import pytest
from langchain_core.messages import AIMessage, AIMessageChunk, BaseMessageChunk, HumanMessage, SystemMessage
from langchain_openai import ChatOpenAI, OpenAIEmbeddings
from pydantic import BaseModel, SecretStr

from nodes.prompts import EXTRACTION_SYSTEM, SUMMARY_SYSTEM
from tests.fake_openai import (
    EMBEDDING_DIMS,
    EMBEDDING_MODEL,
    FakeOpenAIServer,
    embed,
    extract_entities,
    extract_profile,
)

REPO_ROOT = Path(__file__).resolve().parents[2]


class Entity(BaseModel):
    type: str
    value: str
    context: str
    confidence: float


class Extraction(BaseModel):
    """Record the entities found in the newest turn."""

    entities: list[Entity]


@pytest.fixture
def server() -> Iterator[FakeOpenAIServer]:
    with FakeOpenAIServer() as fake:
        yield fake


def chat(server: FakeOpenAIServer, **kwargs: Any) -> ChatOpenAI:
    return ChatOpenAI(base_url=server.base_url, api_key="test", model="fake-model", **kwargs)


def extraction_messages(text: str) -> list[SystemMessage | HumanMessage]:
    return [SystemMessage(EXTRACTION_SYSTEM), HumanMessage(text)]


def test_models_endpoint_lists_fake_model(server: FakeOpenAIServer) -> None:
    with urllib.request.urlopen(f"{server.base_url}/models") as response:
        payload = json.load(response)
    assert [m["id"] for m in payload["data"]] == ["fake-model"]


def test_invoke_respond_is_deterministic_with_usage(server: FakeOpenAIServer) -> None:
    reply = chat(server).invoke([SystemMessage("be nice"), HumanMessage("Hello there, I live in Paris")])
    assert reply.content == "Noted: Hello there, I live in Paris"
    assert reply.usage_metadata is not None
    assert reply.usage_metadata["input_tokens"] == len("be niceHello there, I live in Paris") // 4
    assert reply.usage_metadata["output_tokens"] == len(reply.content) // 4
    [recorded] = server.requests_of("respond")
    assert recorded["messages"][-1]["content"] == "Hello there, I live in Paris"
    assert server.requests_of("extract") == []


def test_respond_truncates_last_user_message_to_60_chars(server: FakeOpenAIServer) -> None:
    reply = chat(server).invoke("x" * 100)
    assert reply.content == "Noted: " + "x" * 60


async def test_astream_yields_word_chunks(server: FakeOpenAIServer) -> None:
    chunks = [c async for c in chat(server).astream("tell me something about the weather")]
    texts = [c.content for c in chunks if c.content]
    assert len(texts) > 3
    assert "".join(str(t) for t in texts) == "Noted: tell me something about the weather"
    assert server.requests_of("respond")[0]["stream"] is True


async def test_stream_include_usage_sends_final_usage_chunk(server: FakeOpenAIServer) -> None:
    total: BaseMessageChunk | None = None
    async for chunk in chat(server, stream_usage=True).astream("count my tokens please"):
        total = chunk if total is None else total + chunk
    assert isinstance(total, AIMessageChunk)
    assert total.usage_metadata is not None
    assert total.usage_metadata["input_tokens"] == len("count my tokens please") // 4
    assert server.requests[0]["stream_options"] == {"include_usage": True}


def test_summarize_collapses_conversation(server: FakeOpenAIServer) -> None:
    messages = [
        SystemMessage(SUMMARY_SYSTEM + "\n\nPrevious summary: none"),
        HumanMessage("Alice   likes\n\ntea."),
        HumanMessage("She works at Acme. " * 40),
    ]
    reply = chat(server).invoke(messages)
    content = str(reply.content)
    assert content.startswith("SUMMARY: Alice likes tea. She works at Acme.")
    assert len(content) == len("SUMMARY: ") + 400
    assert len(server.requests_of("summarize")) == 1


def test_structured_output_extracts_entities(server: FakeOpenAIServer) -> None:
    model = chat(server).with_structured_output(Extraction, method="function_calling")
    text = "My name is Alice. I moved to Paris last year and I work at Acme on Kubernetes."
    result = model.invoke(extraction_messages(text))
    assert isinstance(result, Extraction)
    found = {(e.value, e.type) for e in result.entities}
    assert found == {("Alice", "PERSON"), ("Paris", "LOC"), ("Acme", "ORG"), ("Kubernetes", "OTHER")}
    alice = next(e for e in result.entities if e.value == "Alice")
    assert alice.context == "My name is Alice." and alice.confidence == 0.9
    [recorded] = server.requests_of("extract")
    assert recorded["tools"][0]["function"]["name"] == "Extraction"


async def test_streamed_tool_call(server: FakeOpenAIServer) -> None:
    bound = chat(server).bind_tools([Extraction], tool_choice="Extraction")
    total: BaseMessageChunk | None = None
    async for chunk in bound.astream(extraction_messages("We flew from Berlin to Lisbon.")):
        assert isinstance(chunk, AIMessageChunk)
        total = chunk if total is None else total + chunk
    assert isinstance(total, AIMessageChunk)
    [call] = total.tool_calls
    assert call["name"] == "Extraction"
    assert call["id"]
    assert [(e["value"], e["type"]) for e in call["args"]["entities"]] == [
        ("Berlin", "LOC"),
        ("Lisbon", "LOC"),
    ]
    assert total.response_metadata.get("finish_reason") == "tool_calls"


def test_malformed_extractions_then_recovers(server: FakeOpenAIServer) -> None:
    server.malformed_extractions = 1
    model = chat(server).with_structured_output(Extraction, method="function_calling", include_raw=True)
    bad = model.invoke(extraction_messages("I live in Rome."))
    assert isinstance(bad, dict)
    assert bad["parsed"] is None and bad["parsing_error"] is not None
    good = model.invoke(extraction_messages("I live in Rome."))
    assert isinstance(good, dict)
    assert isinstance(good["parsed"], Extraction)
    assert good["parsed"].entities[0].value == "Rome"
    assert server.malformed_extractions == 0


def test_fail_next_returns_openai_errors(server: FakeOpenAIServer) -> None:
    server.fail_next("respond", 2)
    server.fail_next("extract", 1, status=429)
    llm = chat(server, max_retries=0)
    with pytest.raises(openai.InternalServerError):
        llm.invoke("one")
    with pytest.raises(openai.InternalServerError):
        llm.invoke("two")
    assert llm.invoke("three").content == "Noted: three"
    extractor = llm.with_structured_output(Extraction, method="function_calling")
    with pytest.raises(openai.RateLimitError):
        extractor.invoke(extraction_messages("Hi from Oslo."))
    assert isinstance(extractor.invoke(extraction_messages("Hi from Oslo.")), Extraction)
    assert len(server.requests_of("respond")) == 3


def test_fail_next_is_retried_by_client(server: FakeOpenAIServer) -> None:
    server.fail_next("respond", 1, status=503)
    assert chat(server, max_retries=2).invoke("again").content == "Noted: again"
    assert len(server.requests_of("respond")) == 2


def test_delay_applies_per_kind(server: FakeOpenAIServer) -> None:
    server.set_delay("respond", 0.5)
    llm = chat(server)
    started = time.monotonic()
    llm.invoke("slow")
    assert time.monotonic() - started >= 0.5
    started = time.monotonic()
    llm.with_structured_output(Extraction, method="function_calling").invoke(extraction_messages("fast"))
    assert time.monotonic() - started < 0.5


def test_down_answers_503_until_back_up() -> None:
    with FakeOpenAIServer(down=True) as server:
        llm = chat(server, max_retries=0)
        with pytest.raises(openai.InternalServerError):
            llm.invoke("anyone there?")
        server.down = False
        assert llm.invoke("back").content == "Noted: back"


def test_stopped_server_refuses_connections() -> None:
    server = FakeOpenAIServer().start()
    llm = chat(server, max_retries=0)
    server.stop()
    with pytest.raises(openai.APIConnectionError):
        llm.invoke("hello?")


def test_extract_entities_rules() -> None:
    text = (
        "Hello, Bob here. Tomorrow I fly to Tokyo for Nintendo.\n"
        "Bob says Tokyo is great. What about The Thing?"
    )
    found = {(e["value"], e["type"]) for e in extract_entities(text)}
    # "Bob" starts sentences but also appears mid-sentence; "Tomorrow" only starts one.
    assert found == {("Bob", "OTHER"), ("Tokyo", "LOC"), ("Nintendo", "ORG"), ("Thing", "OTHER")}
    assert extract_entities("") == []
    long = "I met " + "very " * 40 + "Zed"
    assert len(extract_entities(long)[0]["context"]) == 120


def test_cli_prints_ready_logs_and_stops_on_sigterm(tmp_path: Path) -> None:
    log = tmp_path / "requests.jsonl"
    process = subprocess.Popen(
        [sys.executable, "-m", "tests.fake_openai", "--delay-respond", "0.2", "--log", str(log)],
        cwd=REPO_ROOT,
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert process.stdout is not None
        line = process.stdout.readline().strip()
        assert line.startswith("READY http://127.0.0.1:") and line.endswith("/v1")
        base_url = line.split()[1]
        reply = ChatOpenAI(base_url=base_url, api_key="test", model="fake-model").invoke("via cli")
        assert reply.content == "Noted: via cli"
        entries = [json.loads(raw) for raw in log.read_text().splitlines()]
        assert [e["kind"] for e in entries] == ["respond"]
        assert entries[0]["messages"][-1]["content"] == "via cli"
        process.send_signal(signal.SIGTERM)
        assert process.wait(timeout=10) == 0
        assert process.stdout.read() == ""
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()


# --- profile, scripted arguments, embeddings -----------------------------------------------------------


class Fact(BaseModel):
    attribute: str
    value: str


class Profile(BaseModel):
    name: str | None = None
    interests: list[str] = []
    facts: list[Fact] = []


class ExtractionWithProfile(BaseModel):
    """Record the entities and what the user says about themselves."""

    entities: list[Entity]
    profile: Profile | None = None


def test_extract_profile_rules() -> None:
    text = "My name is Ada Lovelace. I live in Lisbon, I work at Acme and I like chess and jazz."
    assert extract_profile(text) == {
        "name": "Ada Lovelace",
        "facts": [{"attribute": "lives_in", "value": "Lisbon"}, {"attribute": "works_at", "value": "Acme"}],
        "interests": ["chess", "jazz"],
    }
    assert extract_profile("I moved to New York last year. I love hiking") == {
        "facts": [{"attribute": "lives_in", "value": "New York"}],
        "interests": ["hiking"],
    }
    assert extract_profile("nothing about me here") == {}


def test_profile_is_sent_only_when_the_tool_declares_it(server: FakeOpenAIServer) -> None:
    text = "My name is Ada. I moved to Paris."
    with_profile = chat(server).with_structured_output(ExtractionWithProfile, method="function_calling")
    result = with_profile.invoke(extraction_messages(text))
    assert isinstance(result, ExtractionWithProfile)
    assert result.profile == Profile(name="Ada", facts=[Fact(attribute="lives_in", value="Paris")])
    assert {e.value for e in result.entities} == {"Ada", "Paris"}
    plain = chat(server).bind_tools([Extraction], tool_choice="Extraction").invoke(extraction_messages(text))
    assert isinstance(plain, AIMessage)
    assert set(plain.tool_calls[0]["args"]) == {"entities"}


def test_scripted_extractions_are_sent_verbatim_then_the_rules_resume(server: FakeOpenAIServer) -> None:
    server.script_extractions('{"entities": [{"type": "ORG", "value": "Ac', '{"entities": []}')
    server.malformed_extractions = 1
    bound = chat(server).bind_tools([Extraction], tool_choice="Extraction")
    broken = bound.invoke(extraction_messages("I live in Rome."))
    assert isinstance(broken, AIMessage)
    assert broken.tool_calls == [] and len(broken.invalid_tool_calls) == 1  # not JSON
    empty = bound.invoke(extraction_messages("I live in Rome."))
    assert isinstance(empty, AIMessage) and empty.tool_calls[0]["args"] == {"entities": []}
    malformed = bound.invoke(extraction_messages("I live in Rome."))
    assert isinstance(malformed, AIMessage) and malformed.tool_calls[0]["args"] == {"entities": "oops"}
    good = bound.invoke(extraction_messages("I live in Rome."))
    assert isinstance(good, AIMessage) and good.tool_calls[0]["args"]["entities"][0]["value"] == "Rome"


def cosine(left: list[float], right: list[float]) -> float:
    return sum(a * b for a, b in zip(left, right, strict=True))


def test_embed_is_deterministic_normalised_and_close_for_similar_strings() -> None:
    vector = embed("Acme Corporation")
    assert len(vector) == EMBEDDING_DIMS
    assert vector == embed("  acme   CORPORATION ")
    assert abs(cosine(vector, vector) - 1.0) < 1e-9
    assert cosine(embed("Lovelace"), embed("Lovelase")) > 0.7
    assert cosine(embed("Acme"), embed("Apex")) < 0.3
    assert embed("") == [0.0] * EMBEDDING_DIMS


@pytest.mark.parametrize("encoding_format", ["float", "base64"])
def test_embeddings_endpoint_speaks_the_openai_shape(server: FakeOpenAIServer, encoding_format: str) -> None:
    client = openai.OpenAI(base_url=server.base_url, api_key="test")
    response = client.embeddings.create(
        model=EMBEDDING_MODEL,
        input=["Acme Corporation", "Paris"],
        encoding_format=encoding_format,  # type: ignore[arg-type]
    )
    assert response.model == EMBEDDING_MODEL
    assert [d.index for d in response.data] == [0, 1]
    for data, text in zip(response.data, ["Acme Corporation", "Paris"], strict=True):
        vector: Any = data.embedding
        if encoding_format == "base64":  # asked for explicitly, the SDK hands the string back as is
            vector = list(struct.unpack(f"<{EMBEDDING_DIMS}f", base64.b64decode(vector)))
        assert vector == pytest.approx(embed(text), abs=1e-6)
    assert response.usage.prompt_tokens == len("Acme CorporationParis") // 4
    [recorded] = server.requests_of("embed")
    assert recorded["input"] == ["Acme Corporation", "Paris"]


async def test_langchain_embeddings_work_against_it(server: FakeOpenAIServer) -> None:
    embeddings = OpenAIEmbeddings(
        openai_api_base=server.base_url,
        openai_api_key=SecretStr("test"),
        model=EMBEDDING_MODEL,
        check_embedding_ctx_length=False,
    )
    [vector] = await embeddings.aembed_documents(["Ada Lovelace"])
    assert vector == pytest.approx(embed("Ada Lovelace"), abs=1e-6)
    assert await embeddings.aembed_query("Ada Lovelace") == pytest.approx(vector)


def test_embeddings_honour_fault_controls_and_refuse_bad_input(server: FakeOpenAIServer) -> None:
    client = openai.OpenAI(base_url=server.base_url, api_key="test", max_retries=0)
    server.fail_next("embed", 1, status=503)
    with pytest.raises(openai.InternalServerError):
        client.embeddings.create(model=EMBEDDING_MODEL, input="x")
    with pytest.raises(openai.BadRequestError):
        client.embeddings.create(model=EMBEDDING_MODEL, input=[])
    assert len(client.embeddings.create(model=EMBEDDING_MODEL, input="x").data) == 1


def weather(city: str) -> str:
    """The weather in a city."""
    return city


@pytest.mark.parametrize("streaming", [False, True])
def test_respond_with_tools_calls_the_marked_tools_then_reads_their_result(
    server: FakeOpenAIServer, streaming: bool
) -> None:
    from langchain_core.messages import ToolMessage

    model = chat(server, streaming=streaming).bind_tools([weather])
    ask = HumanMessage('go [call weather {"city": "Oslo"}] and [call weather {"city": "Rome"}]')
    reply = model.invoke([ask])
    assert isinstance(reply, AIMessage) and not reply.text
    assert [(c["name"], c["args"]) for c in reply.tool_calls] == [
        ("weather", {"city": "Oslo"}),
        ("weather", {"city": "Rome"}),
    ]
    results = [ToolMessage(f"cold in {c['args']['city']}", tool_call_id=c["id"]) for c in reply.tool_calls]
    answer = model.invoke([ask, reply, *results])
    assert answer.text == "Tool said: cold in Rome" and not answer.tool_calls
    assert [r["kind"] for r in server.requests] == ["respond", "respond"]
    plain = model.invoke([HumanMessage("no markers here")])
    assert plain.text == "Noted: no markers here"
