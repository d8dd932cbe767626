"""The checkpoint serializer: the allow-list refuses foreign types; everything the graph writes round-trips;
AES encryption at rest and its errors."""

from __future__ import annotations

import base64
import dataclasses
import os
from collections.abc import Callable
from pathlib import Path
from typing import Any

import ormsgpack
import pytest
from langchain_core.messages import AIMessage, HumanMessage, RemoveMessage
from langgraph.checkpoint.memory import InMemorySaver
from langgraph.checkpoint.serde.base import SerializerProtocol
from langgraph.checkpoint.serde.jsonplus import (
    EXT_CONSTRUCTOR_KW_ARGS,
    EXT_CONSTRUCTOR_SINGLE_ARG,
    EXT_METHOD_SINGLE_ARG,
    EXT_PYDANTIC_V2,
)
from langgraph.types import Command, Interrupt
from pydantic import ValidationError

from checkpoint.serde import (
    ALLOWED_TYPES,
    CheckpointDataRefused,
    StrictSerializer,
    TypeKey,
    make_serializer,
    parse_encryption_key,
    schema_types,
)
from graphs.settings import Settings
from nodes.errors import ConfigError
from nodes.state import Context, State
from tests.support.fakes import ACME, BOB, ScriptedModel, extraction
from tests.support.graphs import CONFIG, history_messages, unit_graph

KEY = base64.b64encode(bytes(range(32))).decode()
OTHER_KEY = base64.b64encode(bytes(range(1, 33))).decode()
SECRET = "Zanzibar-launch-code-7731"
PLAIN = StrictSerializer()


@dataclasses.dataclass
class Gadget:
    """A class of ours that no checkpoint should ever rebuild."""

    name: str


def ext(code: int, *header: Any) -> ormsgpack.Ext:
    return ormsgpack.Ext(code, ormsgpack.packb(header))


def packed(value: Any) -> tuple[str, bytes]:
    return "msgpack", ormsgpack.packb(value)


def ext_types(payload: bytes) -> set[TypeKey]:
    """The (module, name) of every msgpack extension in a payload, nested ones included."""
    found: set[TypeKey] = set()

    def hook(code: int, data: bytes) -> None:
        header = ormsgpack.unpackb(data, ext_hook=hook, option=ormsgpack.OPT_NON_STR_KEYS)
        if isinstance(header, list) and len(header) > 1 and isinstance(header[0], str):
            found.add((header[0], header[1]))

    ormsgpack.unpackb(payload, ext_hook=hook, option=ormsgpack.OPT_NON_STR_KEYS)
    return found


# --- the allow-list ---------------------------------------------------------------------------------


def test_the_allow_list_is_the_state_schemas_messages_plus_what_langgraph_writes() -> None:
    messages = {(c.__module__, c.__name__) for c in (HumanMessage, AIMessage)}
    assert messages <= schema_types(State)
    assert {(RemoveMessage.__module__, "RemoveMessage"), ("langgraph.types", "Interrupt")} <= ALLOWED_TYPES
    assert ("builtins", "set") in ALLOWED_TYPES
    assert not {m for m, _ in ALLOWED_TYPES} & {"os", "subprocess", "builtins.eval", "pickle", __name__}
    assert ("langgraph.types", "Send") in ALLOWED_TYPES  # one task per tool call
    assert ("langgraph.types", "Command") not in ALLOWED_TYPES


def _system(marker: Path) -> ormsgpack.Ext:
    """What CVE-2026-28277 style payloads look like: a constructor extension naming os.system."""
    return ext(EXT_CONSTRUCTOR_SINGLE_ARG, "os", "system", f"touch {marker}")


FOREIGN: dict[str, Callable[[Path], Any]] = {
    "os.system": _system,
    "nested": lambda marker: [1, {"x": _system(marker)}],
    "inside-an-allowed-message": lambda marker: ext(
        EXT_PYDANTIC_V2,
        "langchain_core.messages.human",
        "HumanMessage",
        {"content": _system(marker)},
        "model_validate_json",
    ),
    "method": lambda marker: ext(EXT_METHOD_SINGLE_ARG, "os", "system", f"touch {marker}", "__call__"),
    "our-own-class": lambda _: ext(EXT_CONSTRUCTOR_KW_ARGS, __name__, "Gadget", {"name": "x"}),
    "unknown-extension-code": lambda _: ormsgpack.Ext(42, b"\x90"),
}


@pytest.mark.parametrize("payload", FOREIGN.values(), ids=FOREIGN.keys())
def test_a_type_outside_the_allow_list_is_refused_before_anything_runs(
    payload: Callable[[Path], Any], tmp_path: Path
) -> None:
    marker = tmp_path / "pwned"
    data = ormsgpack.packb(payload(marker))

    with pytest.raises(CheckpointDataRefused, match="Refused checkpoint data"):
        StrictSerializer().loads_typed(("msgpack", data))

    assert not marker.exists()


def test_a_class_we_can_write_is_still_refused_on_load() -> None:
    serde = StrictSerializer()
    written = serde.dumps_typed({"gadget": Gadget("x")})

    with pytest.raises(CheckpointDataRefused, match=rf"{__name__}\.Gadget"):
        serde.loads_typed(written)


@pytest.mark.parametrize(
    ("data", "reason"),
    [
        (("pickle", b"cos\nsystem\n(S'true'\ntR."), "format 'pickle'"),
        (("json", b'{"lc": 2, "type": "constructor", "id": ["os", "system"]}'), "format 'json'"),
        (("msgpack", b"\xc1\xc1"), "not valid msgpack"),
    ],
)
def test_formats_convomem_never_writes_and_garbage_are_refused(data: tuple[str, bytes], reason: str) -> None:
    with pytest.raises(CheckpointDataRefused, match=reason):
        StrictSerializer().loads_typed(data)


def test_plain_values_and_allowed_types_load() -> None:
    serde = StrictSerializer()
    values: list[Any] = [
        None,
        b"raw",
        "text",
        {"a": [1, 2.5, True]},
        {"summarize", "extract_entities"},
        HumanMessage("hi", id="h1"),
        Interrupt(value={"type": "memory_review"}, id="i1"),
    ]
    for value in values:
        assert serde.loads_typed(serde.dumps_typed(value)) == value


# --- what the graph really writes --------------------------------------------------------------------


def _canonical(value: Any) -> Any:
    """A value as msgpack keeps it: tuples as lists, and sets in a fixed order (a set loaded back may
    iterate in another order than the one written, whenever two of its strings' hashes collide)."""
    if isinstance(value, set | frozenset):
        return (type(value).__name__, sorted((_canonical(v) for v in value), key=repr))
    if isinstance(value, list | tuple):
        return [_canonical(v) for v in value]
    if isinstance(value, dict):
        return {k: _canonical(v) for k, v in value.items()}
    return value


class Verifying(SerializerProtocol):
    """Loads back every blob the moment it is written and records the types written.

    A loaded value must serialize exactly as the original did (msgpack has no tuples, so comparing
    the values themselves would flag every tuple LangGraph writes).
    """

    def __init__(self, inner: SerializerProtocol) -> None:
        self.inner = inner
        self.formats: set[str] = set()
        self.types: set[TypeKey] = set()

    def dumps_typed(self, obj: Any) -> tuple[str, bytes]:
        kind, data = self.inner.dumps_typed(obj)
        self.formats.add(kind)
        if kind == "msgpack":
            self.types |= ext_types(data)
        assert _canonical(self.inner.loads_typed((kind, data))) == _canonical(obj)
        return kind, data

    def loads_typed(self, data: tuple[str, bytes]) -> Any:
        return self.inner.loads_typed(data)


@pytest.mark.parametrize("key", [None, KEY], ids=["plain", "encrypted"])
async def test_a_turn_with_review_summary_and_reduction_round_trips(key: str | None) -> None:
    serde = Verifying(make_serializer(encryption_key=key))
    model = ScriptedModel(scripts={"extract": [extraction(ACME, BOB)]})
    graph, _ = unit_graph(model, checkpointer=InMemorySaver(serde=serde), working_set_tokens=600)
    context = Context(user_id="u1", review_memory=True)

    paused = await graph.ainvoke(
        {"messages": [*history_messages(6), HumanMessage(f"Acme Corp. and Bob {SECRET}", id="h1")]},
        CONFIG,
        context=context,
    )
    done = await graph.ainvoke(Command(resume="approve"), CONFIG, context=context)

    assert paused["__interrupt__"][0].value["type"] == "memory_review"
    assert done["summary"] == "SUMMARY-1"
    assert done["extraction"]["stored"] == 2
    assert any(m.id == "h1" for m in done["messages"])
    if key is None:
        assert serde.formats == {"msgpack", "null"}
        # The run exercised every type beyond plain messages that LangGraph writes for this graph.
        assert {("langgraph.types", "Interrupt"), ("builtins", "set")} <= serde.types
        assert (RemoveMessage.__module__, "RemoveMessage") in serde.types
        assert serde.types <= ALLOWED_TYPES
    else:
        assert serde.formats == {"msgpack+aes", "null+aes"}
    snapshot = await graph.aget_state(CONFIG)
    assert snapshot.values["summary"] == "SUMMARY-1"
    assert snapshot.next == ()


# --- encryption ---------------------------------------------------------------------------------------


def test_encrypted_blobs_hide_the_plaintext_and_load_with_the_key() -> None:
    serde = make_serializer(encryption_key=KEY)
    message = HumanMessage(SECRET, id="h1")

    kind, data = serde.dumps_typed([message])

    assert kind == "msgpack+aes"
    assert SECRET.encode() not in data
    assert serde.loads_typed((kind, data)) == [message]
    assert serde.dumps_typed([message])[1] != data  # a fresh nonce each time


def test_rows_written_before_the_key_was_set_stay_readable() -> None:
    plain = make_serializer().dumps_typed(HumanMessage(SECRET, id="h1"))

    assert make_serializer(encryption_key=KEY).loads_typed(plain) == HumanMessage(SECRET, id="h1")


def test_an_encrypted_row_without_a_key_says_to_set_it() -> None:
    encrypted = make_serializer(encryption_key=KEY).dumps_typed("summary")

    with pytest.raises(ConfigError, match="saved encrypted: set CONVOMEM_ENCRYPTION_KEY"):
        make_serializer().loads_typed(encrypted)


def test_a_wrong_key_or_altered_data_is_a_clear_error() -> None:
    kind, data = make_serializer(encryption_key=KEY).dumps_typed("summary")
    altered = data[:-1] + bytes([data[-1] ^ 1])

    with pytest.raises(ConfigError, match="does not decrypt this thread"):
        make_serializer(encryption_key=OTHER_KEY).loads_typed((kind, data))
    with pytest.raises(ConfigError, match="does not decrypt this thread"):
        make_serializer(encryption_key=KEY).loads_typed((kind, altered))
    with pytest.raises(CheckpointDataRefused, match="unknown cipher 'rot13'"):
        make_serializer(encryption_key=KEY).loads_typed(("msgpack+rot13", data))


def test_encrypted_data_is_still_held_to_the_allow_list() -> None:
    serde = make_serializer(encryption_key=KEY)
    kind, data = serde.dumps_typed({"gadget": Gadget("x")})

    with pytest.raises(CheckpointDataRefused, match="Gadget"):
        serde.loads_typed((kind, data))


@pytest.mark.parametrize("size", [16, 24, 32])
def test_keys_are_base64_of_an_aes_key_size(size: int) -> None:
    raw = os.urandom(size)
    assert parse_encryption_key(base64.b64encode(raw).decode()) == raw


@pytest.mark.parametrize(
    "text",
    ["", "not base64!", base64.b64encode(b"x" * 20).decode(), "passphrase with spaces and 32 ch"],
    ids=["empty", "garbage", "20-bytes", "passphrase"],
)
def test_malformed_keys_are_refused_with_how_to_make_one(text: str) -> None:
    with pytest.raises(ValueError, match="openssl rand -base64 32"):
        parse_encryption_key(text)


def test_settings_read_and_check_the_key(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("CONVOMEM_ENCRYPTION_KEY", KEY)
    settings = Settings()
    assert settings.encryption_key is not None
    assert settings.encryption_key.get_secret_value() == KEY
    assert KEY not in repr(settings)
    written = make_serializer(encryption_key=settings.encryption_key).dumps_typed("x")  # SecretStr as is
    assert make_serializer(encryption_key=KEY).loads_typed(written) == "x"
    monkeypatch.setenv("CONVOMEM_ENCRYPTION_KEY", "")
    assert Settings().encryption_key is None

    monkeypatch.setenv("CONVOMEM_ENCRYPTION_KEY", "too-short")
    with pytest.raises(ValidationError, match="base64 encoding of 16, 24 or 32 random bytes"):
        Settings()
