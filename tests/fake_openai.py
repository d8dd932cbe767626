"""A small OpenAI-compatible chat-completions server for end-to-end tests.

The real ``langchain_openai.ChatOpenAI`` client talks to it over real HTTP, so tests exercise the
whole client stack (request building, SSE parsing, tool-call parsing, retries) with deterministic
answers. Standard library only.

Endpoints
    ``GET /v1/models``            lists the single model ``fake-model``.
    ``POST /v1/chat/completions`` streaming (SSE) and non-streaming; every answer carries ``usage``
                                  (prompt tokens = characters of all message contents // 4,
                                  completion tokens = characters of the reply // 4).
    ``POST /v1/embeddings``       OpenAI shape (``data[{embedding, index}]``, ``usage``, model
                                  ``fake-embedding``), ``encoding_format`` float or base64; see
                                  ``embed``. Recorded as kind ``embed``.

Each chat request is classified into a *kind*:
    ``extract``    the request has ``tools`` and forces a call (``tool_choice`` names a function or is
                   ``required``) of a tool with an ``entities`` parameter; the reply is one call of it.
    ``summarize``  the first system message starts with ``nodes.prompts.SUMMARY_SYSTEM``; the reply is
                   ``"SUMMARY: "`` + all later non-system message contents, whitespace-collapsed,
                   truncated to 400 characters.
    ``respond``    anything else; the reply is ``"Noted: "`` + the first 60 characters of the last
                   user message. When the request offers ``tools`` (the model may call them):
                   * ``tool_choice`` forces a call: the reply calls that tool, its first required
                     argument set to the last user message;
                   * the last message is the user's and holds ``[call NAME {json args}]`` markers: the
                     reply calls those tools, all at once, in order (ids ``call_<n>``), and has no text;
                   * the last message is a tool result: the reply is ``"Tool said: "`` + the first 60
                     characters of that result (whitespace collapsed).
                   With a ``response_format`` carrying a JSON Schema (OpenAI's ``json_schema``,
                   or llama.cpp's ``json_object`` + ``schema``) and no tool call, the reply is the
                   schema's first instance (``schema_instance``), unless a user message says
                   ``OFF-SCHEMA`` (the reply is ``{}``) or ``OFF-SCHEMA-ONCE`` (``{}``, then after
                   the repair request, ``nodes.prompts.SCHEMA_REPAIR_REQUEST``, the instance).

Entity rules for ``extract`` (applied to the last ``user`` message only):
    * candidates are words matching ``\\b[A-Z][a-zA-Z]{2,}\\b``;
    * words in ``STOPWORDS`` are skipped, and so is a word that starts a sentence (or a line) unless
      the same word also appears mid-sentence somewhere in the text;
    * the type comes from the lower-cased text just before the word: ``work at``/``works at``/``for``
      -> ``ORG``; ``name is``/``i am``/``i'm`` -> ``PERSON``; ``in``/``to``/``from``/``at`` -> ``LOC``;
      otherwise ``OTHER``;
    * ``context`` is the sentence the word came from (at most 120 characters), ``confidence`` is 0.9;
    * entities are deduplicated by value (first occurrence wins).

Profile rules for ``extract`` (only when the tool declares a ``profile`` parameter; the key is left
out when nothing matches), applied to the last ``user`` message:
    * ``my name is X`` -> ``name`` (X: the capitalised words that follow);
    * ``I live in X`` / ``I moved to X`` -> ``facts: [{"attribute": "lives_in", "value": X}]`` and
      ``I work at X`` -> ``works_at`` (X: the capitalised words that follow);
    * ``I like X`` / ``I love X`` -> ``interests`` (X: the rest of the clause, split on " and ").

Embeddings (``embed``): hashed character trigrams of the casefolded, whitespace-collapsed text,
``EMBEDDING_DIMS`` (64) dimensions, L2-normalised: deterministic, and strings sharing spelling are
close ("Acme Corporation" ~ "Acme Corp"), unrelated ones are not.

Fault controls (thread-safe, settable at runtime or via the constructor): ``delay_seconds`` per
kind, ``fail_next(kind, count, status)``, ``malformed_extractions`` (arguments ``{"entities":
"oops"}``), ``script_extractions(*raw)`` (the next extract replies carry these argument strings
verbatim, e.g. invalid JSON; they go before ``malformed_extractions``) and ``down`` (every request
gets a 503 and the connection is closed).

Standalone use::

    python -m tests.fake_openai [--port N] [--delay-extract S] [--delay-respond S]
                                [--delay-summarize S] [--log FILE]

prints one line ``READY http://127.0.0.1:PORT/v1`` and serves until SIGTERM/SIGINT. ``--log``
appends one JSON line per chat request (the body plus its ``kind``).
"""

from __future__ import annotations

import argparse
import base64
import itertools
import json
import math
import re
import signal
import struct
import sys
import threading
import time
import zlib
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from types import FrameType, TracebackType
from typing import Any, NamedTuple, cast

from nodes.prompts import SCHEMA_REPAIR_REQUEST, SUMMARY_SYSTEM

__all__ = [
    "EMBEDDING_DIMS",
    "EMBEDDING_MODEL",
    "KINDS",
    "MODEL",
    "STOPWORDS",
    "FakeOpenAIServer",
    "embed",
    "extract_entities",
    "extract_profile",
    "main",
]

Json = dict[str, Any]

MODEL = "fake-model"
EMBEDDING_MODEL = "fake-embedding"
EMBEDDING_DIMS = 64
KINDS = ("extract", "summarize", "respond", "embed")
STOPWORDS = frozenset(
    {"The", "This", "That", "User", "Assistant", "What", "Where", "When", "Who", "How"}
    | {"Hello", "Please", "Thanks", "Yes", "Noted", "SUMMARY"}
)
MALFORMED_ARGUMENTS = '{"entities": "oops"}'

_WORD = re.compile(r"\b[A-Z][a-zA-Z]{2,}\b")
_SENTENCE_BREAK = re.compile(r"(?<=[.!?])\s+|\n+")
_TYPE_BY_PREFIX = (
    (("work at ", "works at ", "for "), "ORG"),
    (("name is ", "i am ", "i'm "), "PERSON"),
    (("in ", "to ", "from ", "at "), "LOC"),
)


# --------------------------------------------------------------------------- deterministic answers


def _text(content: Any) -> str:
    """Message content as plain text (strings, or lists of ``{"type": "text"}`` parts)."""
    if isinstance(content, str):
        return content
    if isinstance(content, list):
        return "".join(p.get("text", "") for p in content if isinstance(p, dict))
    return ""


def _messages(body: Json) -> list[Json]:
    messages = body.get("messages")
    return [m for m in messages if isinstance(m, dict)] if isinstance(messages, list) else []


def _is_system(message: Json) -> bool:
    return message.get("role") in ("system", "developer")


def _last_user_text(body: Json) -> str:
    users = [m for m in _messages(body) if m.get("role") == "user"]
    return _text(users[-1].get("content")) if users else ""


_CALL_MARKER = re.compile(r"\[call (\w+)(?: (\{.*?\}))?\]")


def _forces_a_call(body: Json) -> bool:
    choice = body.get("tool_choice")
    return isinstance(choice, dict) or choice in ("required", "any")


def _forced_tool(body: Json) -> Json | None:
    """The function a request forces the reply to call (the first tool when any call is required)."""
    if not body.get("tools") or not _forces_a_call(body):
        return None
    choice = body.get("tool_choice")
    name = choice.get("function", {}).get("name") if isinstance(choice, dict) else None
    functions = [tool.get("function", tool) for tool in body["tools"]]
    return next((f for f in functions if f.get("name") == name), functions[0])


def _is_extraction(function: Json) -> bool:
    return "entities" in function.get("parameters", {}).get("properties", {})


def classify(body: Json) -> str:
    """Return the kind of a chat request: ``extract``, ``summarize`` or ``respond``."""
    forced = _forced_tool(body)
    if forced is not None and _is_extraction(forced):
        return "extract"
    system = next((m for m in _messages(body) if _is_system(m)), None)
    if system is not None and _text(system.get("content")).startswith(SUMMARY_SYSTEM):
        return "summarize"
    return "respond"


def extract_entities(text: str) -> list[Json]:
    """Find entities in ``text`` following the rules in the module docstring."""
    sentences = [s.strip() for s in _SENTENCE_BREAK.split(text) if s.strip()]
    mid_sentence = {m.group() for s in sentences for m in _WORD.finditer(s) if m.start() > 0}
    entities: dict[str, Json] = {}
    for sentence in sentences:
        for match in _WORD.finditer(sentence):
            value = match.group()
            if value in STOPWORDS or value in entities:
                continue
            if match.start() == 0 and value not in mid_sentence:
                continue
            prefix = sentence[: match.start()].lower()
            kind = next(
                (t for ends, t in _TYPE_BY_PREFIX if prefix.endswith(ends)),
                "OTHER",
            )
            entities[value] = {
                "type": kind,
                "value": value,
                "context": sentence[:120],
                "confidence": 0.9,
            }
    return list(entities.values())


_NAME = r"([A-Z][\w'-]*(?: [A-Z][\w'-]*)*)"
_FACT_PATTERNS = (
    (re.compile(r"\bI (?:live in|moved to) " + _NAME), "lives_in"),
    (re.compile(r"\bI work at " + _NAME), "works_at"),
)
_MY_NAME = re.compile(r"\b[Mm]y name is " + _NAME)
_LIKES = re.compile(r"\bI (?:like|love) ([^.,;!?\n]+)")


def extract_profile(text: str) -> Json:
    """What ``text`` says about the user, following the profile rules in the module docstring."""
    profile: Json = {}
    if name := _MY_NAME.search(text):
        profile["name"] = name.group(1)
    facts = [
        {"attribute": a, "value": m.group(1)} for pattern, a in _FACT_PATTERNS for m in pattern.finditer(text)
    ]
    if facts:
        profile["facts"] = facts
    interests = [i.strip() for m in _LIKES.finditer(text) for i in m.group(1).split(" and ") if i.strip()]
    if interests:
        profile["interests"] = interests
    return profile


def embed(text: str) -> list[float]:
    """Deterministic embedding: hashed character trigrams, L2-normalised (zeros for empty text)."""
    folded = f" {' '.join(text.casefold().split())} "
    vector = [0.0] * EMBEDDING_DIMS
    for start in range(len(folded) - 2):
        vector[zlib.crc32(folded[start : start + 3].encode()) % EMBEDDING_DIMS] += 1.0
    norm = math.sqrt(sum(v * v for v in vector)) or 1.0
    return [v / norm for v in vector]


def _embedding_inputs(body: Json) -> list[str] | None:
    """The texts of an embeddings request (token-id inputs are embedded as their digits), or None."""
    raw = body.get("input")
    items = (
        [raw] if isinstance(raw, str) or (isinstance(raw, list) and raw and isinstance(raw[0], int)) else raw
    )
    if not isinstance(items, list) or not items:
        return None
    texts = [
        item if isinstance(item, str) else " ".join(map(str, item))
        for item in items
        if isinstance(item, str | list)
    ]
    return texts if len(texts) == len(items) else None


def _extraction_arguments(body: Json) -> str:
    # The request labels the text like its worked examples ("Message: ..."); the label is not the user's.
    text = _last_user_text(body).removeprefix("Message: ")
    arguments: Json = {"entities": extract_entities(text)}
    parameters = body["tools"][0].get("function", {}).get("parameters", {})
    if "profile" in parameters.get("properties", {}) and (profile := extract_profile(text)):
        arguments["profile"] = profile
    return json.dumps(arguments)


def _response_schema(body: Json) -> Json | None:
    shape = body.get("response_format")
    if not isinstance(shape, dict):
        return None
    schema = shape.get("json_schema", {}).get("schema") if shape.get("type") == "json_schema" else None
    found = schema if schema is not None else shape.get("schema")
    return found if isinstance(found, dict) else None


def schema_instance(schema: Json, text: str) -> Any:
    """A value matching a plain schema: enums take their first value, strings the user's text (cut to
    maxLength), numbers their minimum or 1, objects their required properties (all when none are)."""
    if "enum" in schema:
        return schema["enum"][0]
    kind = schema.get("type")
    if kind == "object":
        properties = schema.get("properties") or {}
        names = schema.get("required") or list(properties)
        return {name: schema_instance(properties.get(name, {"type": "string"}), text) for name in names}
    if kind == "array":
        return [schema_instance(schema.get("items") or {"type": "string"}, text)] * schema.get("minItems", 0)
    if kind in ("integer", "number"):
        return schema.get("minimum", 1)
    if kind == "boolean":
        return True
    return (text or "x")[: schema.get("maxLength", 60)]


_REPAIR_PREFIX = SCHEMA_REPAIR_REQUEST.split("{", 1)[0]


def _schema_reply(schema: Json, body: Json) -> str:
    users = [_text(m.get("content")) for m in _messages(body) if m.get("role") == "user"]
    said = next((u for u in reversed(users) if not u.startswith(_REPAIR_PREFIX)), "")
    repaired = bool(users) and users[-1].startswith(_REPAIR_PREFIX)
    if "OFF-SCHEMA" in said and not ("OFF-SCHEMA-ONCE" in said and repaired):
        return "{}"
    return json.dumps(schema_instance(schema, said[:60]))


def respond_calls(body: Json) -> list[tuple[str, str]]:
    """(name, JSON arguments) of the tools a respond request's reply calls (module docstring)."""
    messages = _messages(body)
    if not body.get("tools") or not messages or messages[-1].get("role") != "user":
        return []
    forced = _forced_tool(body)
    if forced is not None:  # tool_choice: the named tool, its first required argument the user's words
        required = forced.get("parameters", {}).get("required") or ["input"]
        return [(str(forced.get("name")), json.dumps({required[0]: _last_user_text(body)}))]
    return [
        (m.group(1), m.group(2) or "{}") for m in _CALL_MARKER.finditer(_text(messages[-1].get("content")))
    ]


def _reply_text(kind: str, body: Json) -> str:
    if kind == "respond" and (schema := _response_schema(body)) is not None:
        return _schema_reply(schema, body)
    if kind == "summarize":
        messages = _messages(body)
        rest = messages[1:] if messages and _is_system(messages[0]) else messages
        joined = " ".join(_text(m.get("content")) for m in rest if not _is_system(m))
        return "SUMMARY: " + " ".join(joined.split())[:400]
    messages = _messages(body)
    if body.get("tools") and messages and messages[-1].get("role") == "tool":
        return "Tool said: " + " ".join(_text(messages[-1].get("content")).split())[:60]
    return "Noted: " + _last_user_text(body)[:60]


def _tool_name(body: Json) -> str:
    tool = body["tools"][0]
    return str(tool.get("function", {}).get("name", tool.get("name", "tool")))


# --------------------------------------------------------------------------------------- server


class _Plan(NamedTuple):
    """How to answer one recorded request."""

    delay: float = 0.0
    status: int | None = None
    arguments: str | None = None
    """Raw tool-call arguments to send instead of the rule-based ones (extract only)."""
    down: bool = False


class _HTTPServer(ThreadingHTTPServer):
    daemon_threads = True

    def __init__(self, port: int, fake: FakeOpenAIServer) -> None:
        super().__init__(("127.0.0.1", port), _Handler)
        self.fake = fake


class FakeOpenAIServer:
    """OpenAI-compatible chat-completions server on 127.0.0.1, served from a daemon thread."""

    def __init__(
        self,
        port: int = 0,
        *,
        delay_seconds: dict[str, float] | None = None,
        malformed_extractions: int = 0,
        down: bool = False,
        log_path: str | Path | None = None,
        llama_cpp_stream: bool = False,
    ) -> None:
        self._port = port
        self.llama_cpp_stream = llama_cpp_stream
        """Stream tool calls as llama-cpp-python does: the call's name and id again in every chunk."""
        self._lock = threading.Lock()
        self._stopped = threading.Event()
        self._requests: list[Json] = []
        self._failures: dict[str, list[int]] = {}
        self._scripted: list[str] = []
        self._ids = itertools.count(1)
        self._httpd: _HTTPServer | None = None
        self._thread: threading.Thread | None = None
        self.delay_seconds: dict[str, float] = dict(delay_seconds or {})
        self._malformed = malformed_extractions
        self._down = down
        self.log_path = Path(log_path) if log_path is not None else None

    # ---------------------------------------------------------------- lifecycle

    def start(self) -> FakeOpenAIServer:
        if self._httpd is None:
            self._stopped.clear()
            self._httpd = _HTTPServer(self._port, self)
            self._port = self._httpd.server_address[1]
            self._thread = threading.Thread(
                target=self._httpd.serve_forever, args=(0.05,), name="fake-openai", daemon=True
            )
            self._thread.start()
        return self

    def stop(self) -> None:
        """Stop serving; later connections are refused. Pending delays are cut short."""
        self._stopped.set()
        if self._httpd is not None:
            self._httpd.shutdown()
            self._httpd.server_close()
            self._httpd = None
        if self._thread is not None:
            self._thread.join(timeout=5)
            self._thread = None

    def __enter__(self) -> FakeOpenAIServer:
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()

    @property
    def port(self) -> int:
        return self._port

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self._port}/v1"

    # ---------------------------------------------------------------- recorded requests

    @property
    def requests(self) -> list[Json]:
        """A copy of every chat request body received so far, each with its ``kind`` added."""
        with self._lock:
            return list(self._requests)

    def requests_of(self, kind: str) -> list[Json]:
        return [r for r in self.requests if r["kind"] == kind]

    def clear_requests(self) -> None:
        with self._lock:
            self._requests.clear()

    # ---------------------------------------------------------------- fault controls

    def set_delay(self, kind: str, seconds: float) -> None:
        with self._lock:
            self.delay_seconds[kind] = seconds

    def fail_next(self, kind: str, count: int = 1, status: int = 500) -> None:
        """Answer the next ``count`` requests of ``kind`` with HTTP ``status`` and an error body."""
        with self._lock:
            self._failures.setdefault(kind, []).extend([status] * count)

    @property
    def malformed_extractions(self) -> int:
        with self._lock:
            return self._malformed

    @malformed_extractions.setter
    def malformed_extractions(self, count: int) -> None:
        with self._lock:
            self._malformed = count

    def script_extractions(self, *arguments: str) -> None:
        """Answer the next extract requests with these raw argument strings, in order (any text:
        invalid JSON, absurd values); they go before ``malformed_extractions``."""
        with self._lock:
            self._scripted.extend(arguments)

    @property
    def down(self) -> bool:
        with self._lock:
            return self._down

    @down.setter
    def down(self, value: bool) -> None:
        with self._lock:
            self._down = value

    # ---------------------------------------------------------------- used by the handler

    def _record(self, kind: str, body: Json) -> _Plan:
        """Record a request and decide how to answer it."""
        entry = {**body, "kind": kind}
        with self._lock:
            self._requests.append(entry)
            if self.log_path is not None:
                with self.log_path.open("a", encoding="utf-8") as log:
                    log.write(json.dumps(entry) + "\n")
            if self._down:
                return _Plan(down=True)
            delay = self.delay_seconds.get(kind, 0.0)
            queue = self._failures.get(kind)
            status = queue.pop(0) if queue else None
            arguments: str | None = None
            if kind == "extract" and status is None and self._scripted:
                arguments = self._scripted.pop(0)
            elif kind == "extract" and status is None and self._malformed > 0:
                arguments = MALFORMED_ARGUMENTS
                self._malformed -= 1
        return _Plan(delay=delay, status=status, arguments=arguments)

    def _next_id(self) -> str:
        with self._lock:
            return f"chatcmpl-fake-{next(self._ids)}"


class _Handler(BaseHTTPRequestHandler):
    server_version = "FakeOpenAI/1.0"

    @property
    def fake(self) -> FakeOpenAIServer:
        return cast(_HTTPServer, self.server).fake

    def log_message(self, format: str, *args: Any) -> None:
        """Keep test output quiet."""

    # ------------------------------------------------------------------ plumbing

    def _send_json(self, status: int, payload: Json) -> None:
        data = json.dumps(payload).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def _send_error(self, status: int, message: str) -> None:
        error = {"message": message, "type": "server_error", "param": None, "code": str(status)}
        self._send_json(status, {"error": error})

    # ------------------------------------------------------------------ endpoints

    def do_GET(self) -> None:
        if self.path.rstrip("/") == "/v1/models":
            model = {"id": MODEL, "object": "model", "created": 0, "owned_by": "convomem-tests"}
            self._send_json(200, {"object": "list", "data": [model]})
        else:
            self._send_error(404, f"unknown path {self.path}")

    def do_POST(self) -> None:
        fake = self.fake
        length = int(self.headers.get("Content-Length") or 0)
        raw = self.rfile.read(length)
        path = self.path.rstrip("/")
        if path not in ("/v1/chat/completions", "/v1/embeddings"):
            self._send_error(404, f"unknown path {self.path}")
            return
        try:
            body = json.loads(raw)
        except ValueError:
            self._send_error(400, "request body is not valid JSON")
            return
        if not isinstance(body, dict):
            self._send_error(400, "request body must be a JSON object")
            return
        kind = "embed" if path == "/v1/embeddings" else classify(body)
        plan = fake._record(kind, body)
        if plan.down:
            self.close_connection = True
            self._send_error(503, "fake server is down")
            return
        if plan.delay > 0:
            fake._stopped.wait(plan.delay)
        if plan.status is not None:
            self._send_error(plan.status, f"injected failure for {kind}")
            return
        if kind == "embed":
            self._embeddings(body)
        else:
            self._answer(kind, body, plan.arguments)

    # ------------------------------------------------------------------ answers

    def _embeddings(self, body: Json) -> None:
        texts = _embedding_inputs(body)
        if texts is None:
            self._send_error(400, "input must be a string, a list of strings or token ids")
            return
        data: list[Json] = []
        for index, text in enumerate(texts):
            vector = embed(text)
            encoded: Any = vector
            if body.get("encoding_format") == "base64":
                encoded = base64.b64encode(struct.pack(f"<{len(vector)}f", *vector)).decode()
            data.append({"object": "embedding", "embedding": encoded, "index": index})
        tokens = sum(len(text) for text in texts) // 4
        usage = {"prompt_tokens": tokens, "total_tokens": tokens}
        self._send_json(200, {"object": "list", "data": data, "model": EMBEDDING_MODEL, "usage": usage})

    def _answer(self, kind: str, body: Json, scripted: str | None) -> None:
        model = str(body.get("model") or MODEL)
        prompt_chars = sum(len(_text(m.get("content"))) for m in _messages(body))
        wanted = respond_calls(body) if kind == "respond" else []
        if kind == "extract":
            arguments = scripted if scripted is not None else _extraction_arguments(body)
            wanted = [(_tool_name(body), arguments)]
        tool_calls: list[Json] = [
            {
                "id": f"call_{self.fake._next_id()}",
                "type": "function",
                "function": {"name": n, "arguments": a},
            }
            for n, a in wanted
        ]
        text = "" if tool_calls else _reply_text(kind, body)
        completion_chars = len(text) + sum(len(a) for _, a in wanted)
        usage = {
            "prompt_tokens": prompt_chars // 4,
            "completion_tokens": completion_chars // 4,
            "total_tokens": prompt_chars // 4 + completion_chars // 4,
        }
        base = {"id": self.fake._next_id(), "created": int(time.time()), "model": model}
        if body.get("stream"):
            options = body.get("stream_options") or {}
            self._stream(base, text, tool_calls, usage if options.get("include_usage") else None)
            return
        message: Json = {"role": "assistant", "content": None if tool_calls else text}
        if tool_calls:
            message["tool_calls"] = tool_calls
        choice = {
            "index": 0,
            "message": message,
            "finish_reason": "tool_calls" if tool_calls else "stop",
            "logprobs": None,
        }
        self._send_json(200, {**base, "object": "chat.completion", "choices": [choice], "usage": usage})

    def _stream(self, base: Json, text: str, tool_calls: list[Json], usage: Json | None) -> None:
        self.close_connection = True
        self.send_response(200)
        self.send_header("Content-Type", "text/event-stream")
        self.send_header("Cache-Control", "no-cache")
        self.send_header("Connection", "close")
        self.end_headers()
        for delta, finish in _deltas(text, tool_calls, repeat_head=self.fake.llama_cpp_stream):
            choice = {"index": 0, "delta": delta, "finish_reason": finish, "logprobs": None}
            chunk: Json = {**base, "object": "chat.completion.chunk", "choices": [choice]}
            if usage is not None:
                chunk["usage"] = None
            self._event(json.dumps(chunk))
        if usage is not None:
            self._event(
                json.dumps({**base, "object": "chat.completion.chunk", "choices": [], "usage": usage})
            )
        self._event("[DONE]")

    def _event(self, data: str) -> None:
        self.wfile.write(f"data: {data}\n\n".encode())
        self.wfile.flush()


def _deltas(text: str, tool_calls: list[Json], *, repeat_head: bool) -> Iterator[tuple[Json, str | None]]:
    """The (delta, finish_reason) sequence of a streamed answer: text word by word, or each tool call's
    head and then its arguments in 16-character pieces (each with the head again when `repeat_head`)."""
    if not tool_calls:
        yield {"role": "assistant", "content": ""}, None
        for word in re.findall(r"\s*\S+", text):
            yield {"content": word}, None
        yield {}, "stop"
        return
    yield {"role": "assistant", "content": None}, None
    for index, tool_call in enumerate(tool_calls):
        function = tool_call["function"]
        head = {
            "index": index,
            "id": tool_call["id"],
            "type": "function",
            "function": {"name": function["name"], "arguments": ""},
        }
        yield {"tool_calls": [head]}, None
        arguments: str = function["arguments"]
        for start in range(0, len(arguments), 16):
            piece = arguments[start : start + 16]
            part = {"index": index, "function": {"arguments": piece}}
            if repeat_head:
                part = {**head, "function": {"name": function["name"], "arguments": piece}}
            yield {"tool_calls": [part]}, None
    yield {}, "tool_calls"


# ------------------------------------------------------------------------------------------ CLI


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--port", type=int, default=0)
    for kind in KINDS:
        parser.add_argument(f"--delay-{kind}", type=float, default=0.0, metavar="S")
    parser.add_argument("--log", type=Path, default=None, metavar="FILE")
    args = parser.parse_args(argv)
    delays = {kind: float(getattr(args, f"delay_{kind}")) for kind in KINDS}
    stop = threading.Event()

    def on_signal(signum: int, frame: FrameType | None) -> None:
        stop.set()

    signal.signal(signal.SIGTERM, on_signal)
    signal.signal(signal.SIGINT, on_signal)
    with FakeOpenAIServer(args.port, delay_seconds=delays, log_path=args.log) as server:
        print(f"READY {server.base_url}", flush=True)
        while not stop.wait(0.2):
            pass
    return 0


if __name__ == "__main__":
    sys.exit(main())
