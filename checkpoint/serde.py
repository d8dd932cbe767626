"""The checkpoint serializer: msgpack limited to the state schema's types, optionally AES-encrypted."""

from __future__ import annotations

import base64
import binascii
import dataclasses
import datetime
import uuid
from collections.abc import Iterable
from enum import Enum
from typing import Annotated, Any, NotRequired, Required, get_args, get_origin, get_type_hints

import ormsgpack
from langchain_core.messages import RemoveMessage
from langchain_core.runnables import RunnableConfig
from langgraph.checkpoint.base import BaseCheckpointSaver, ChannelVersions, Checkpoint, CheckpointMetadata
from langgraph.checkpoint.serde.base import CipherProtocol, SerializerProtocol
from langgraph.checkpoint.serde.encrypted import EncryptedSerializer
from langgraph.checkpoint.serde.jsonplus import (
    EXT_CONSTRUCTOR_KW_ARGS,
    EXT_CONSTRUCTOR_POS_ARGS,
    EXT_CONSTRUCTOR_SINGLE_ARG,
    EXT_DELTA_SNAPSHOT,
    EXT_METHOD_SINGLE_ARG,
    EXT_PYDANTIC_V1,
    EXT_PYDANTIC_V2,
    JsonPlusSerializer,
)
from langgraph.types import Interrupt, Send
from pydantic import BaseModel, SecretStr
from typing_extensions import is_typeddict

from nodes.errors import ConfigError, ConvomemError
from nodes.state import State

__all__ = [
    "AES_KEY_SIZES",
    "ALLOWED_METHODS",
    "ALLOWED_TYPES",
    "CheckpointDataRefused",
    "SealInlineValues",
    "StrictSerializer",
    "TypeKey",
    "make_serializer",
    "parse_encryption_key",
    "schema_types",
]

TypeKey = tuple[str, str]
"""(module, name) as LangGraph's msgpack extensions name a class."""

AES_KEY_SIZES = (16, 24, 32)
PLAIN_FORMATS = frozenset({"null", "bytes", "bytearray", "msgpack"})
"""What JsonPlusSerializer writes. "json" (pre-msgpack LangGraph) and "pickle" are never written by
convomem, so a row claiming them was not written by convomem and is refused."""
_CONSTRUCTOR_EXTS = frozenset(
    {
        EXT_CONSTRUCTOR_SINGLE_ARG,
        EXT_CONSTRUCTOR_POS_ARGS,
        EXT_CONSTRUCTOR_KW_ARGS,
        EXT_PYDANTIC_V1,
        EXT_PYDANTIC_V2,
    }
)
_SKIPPED_ORIGINS: tuple[Any, ...] = (Annotated, NotRequired, Required)


class CheckpointDataRefused(ConvomemError):
    """A checkpoint row names a type outside the allow-list, or is not readable msgpack at all.

    Loading it could run arbitrary code (CVE-2026-28277), so it is refused instead of warned about.
    """


def _key(cls: type) -> TypeKey:
    return (cls.__module__, cls.__name__)


def schema_types(schema: Any) -> frozenset[TypeKey]:
    """Every class a value of `schema` can hold that msgpack stores as an extension (so must rebuild).

    Walks TypedDict fields, Annotated/Union/NotRequired wrappers and container arguments. Pydantic
    models and dataclasses are listed themselves; their fields are not walked, because the encoder
    flattens a model to its `model_dump()` and a dataclass's field values are walked when written.
    """
    found: set[TypeKey] = set()
    seen: set[int] = set()

    def walk(hint: Any) -> None:
        if id(hint) in seen:
            return
        seen.add(id(hint))
        origin = get_origin(hint)
        if origin in _SKIPPED_ORIGINS:
            walk(get_args(hint)[0])
        elif origin is not None:  # unions, lists, dicts, ...
            for arg in get_args(hint):
                walk(arg)
        elif is_typeddict(hint):
            for field in get_type_hints(hint, include_extras=True).values():
                walk(field)
        elif isinstance(hint, type) and (
            issubclass(hint, BaseModel | Enum) or dataclasses.is_dataclass(hint)
        ):
            found.add(_key(hint))

    walk(schema)
    return frozenset(found)


_WRITTEN_BY_LANGGRAPH: frozenset[TypeKey] = frozenset(
    {
        _key(RemoveMessage),  # add_messages deletes by writing one (reduce_history)
        _key(Interrupt),  # interrupt() in extract_entities' memory review and the forget tool
        _key(Send),  # each tool call is its own task (nodes.tool_loop.route_after_respond): node + call dict
        _key(set),  # the barrier channel joining extract_entities and summarize
        _key(frozenset),
        _key(uuid.UUID),
        _key(datetime.date),
        _key(datetime.time),
        _key(datetime.timedelta),
        _key(datetime.timezone),
    }
)
ALLOWED_TYPES: frozenset[TypeKey] = schema_types(State) | _WRITTEN_BY_LANGGRAPH
"""The classes a convomem checkpoint may rebuild: State's messages, plus what LangGraph itself writes.

Send carries only a node name and a tool call (plain dicts, checked like any other value); no Command:
the graph never returns one, and a resume value is stored as the plain value it carries.
"""
ALLOWED_METHODS: frozenset[tuple[str, str, str]] = frozenset({("datetime", "datetime", "fromisoformat")})
"""The one classmethod call msgpack extensions make: how LangGraph stores a datetime."""


def _refusal_reason(payload: bytes, allowed: frozenset[TypeKey]) -> str | None:
    """Why `payload` may not be loaded, or None. Unpacks once without building anything: every
    extension is checked, nested ones first, before LangGraph's loader may import a single name."""
    refused: list[str] = []

    def check(code: int, data: bytes) -> None:
        header = ormsgpack.unpackb(data, ext_hook=check, option=ormsgpack.OPT_NON_STR_KEYS)
        if code == EXT_DELTA_SNAPSHOT:
            return None
        if code in _CONSTRUCTOR_EXTS and _names(header, 2) in allowed:
            return None
        if code == EXT_METHOD_SINGLE_ARG and _names(header, 4, method=True) in ALLOWED_METHODS:
            return None
        refused.append(_describe(code, header))
        raise ValueError(refused[-1])

    try:
        ormsgpack.unpackb(payload, ext_hook=check, option=ormsgpack.OPT_NON_STR_KEYS)
    except ValueError as error:  # ormsgpack reports a failing ext_hook as a bare "ext_hook failed"
        return f"it holds {refused[0]}" if refused else f"it is not valid msgpack ({error})"
    return None


def _names(header: Any, size: int, *, method: bool = False) -> tuple[str, ...] | None:
    if not isinstance(header, list | tuple) or len(header) < size:
        return None
    names = (header[0], header[1], header[3]) if method else (header[0], header[1])
    return names if all(isinstance(name, str) for name in names) else None


def _describe(code: int, header: Any) -> str:
    names = _names(header, 2)
    return f"type {'.'.join(names)}" if names else f"an unknown msgpack extension (code {code})"


class StrictSerializer(JsonPlusSerializer):
    """JsonPlusSerializer that refuses, with an error, any type outside convomem's allow-list.

    Upstream's strict mode (LANGGRAPH_STRICT_MSGPACK) does not raise: it hands back the raw payload
    of a blocked type, which then flows into state as a plain list or dict. A checkpoint we did not
    write is a tampered or foreign one, and continuing from it is worse than stopping.
    """

    def __init__(self, allowed: Iterable[TypeKey] = ALLOWED_TYPES) -> None:
        self.allowed = frozenset(allowed)
        super().__init__(allowed_msgpack_modules=tuple(self.allowed))

    def dumps_typed(self, obj: Any) -> tuple[str, bytes]:
        return super().dumps_typed(obj.value if isinstance(obj, _Sealed) else obj)

    def loads_typed(self, data: tuple[str, bytes]) -> Any:
        kind, payload = data
        if "+" in kind:  # EncryptedSerializer's "<format>+<cipher>", reaching us undecrypted
            raise ConfigError(
                "This thread was saved encrypted: set CONVOMEM_ENCRYPTION_KEY to the key it was written "
                "with to read it."
            )
        if kind not in PLAIN_FORMATS:
            raise CheckpointDataRefused(
                f"Refused checkpoint data in format {kind!r}: convomem writes only msgpack. "
                "The row was not written by convomem; restore it from a backup or delete the thread."
            )
        if kind == "msgpack" and (reason := _refusal_reason(payload, self.allowed)):
            raise CheckpointDataRefused(
                f"Refused checkpoint data: {reason}, which convomem never writes (a tampered or foreign "
                "row, refused because loading it could run code). Restore the thread from a backup or "
                "delete it."
            )
        return super().loads_typed(data)


class _ExplainedCipher(CipherProtocol):
    """LangGraph's AES cipher, with the wrong-key failure said in words instead of "MAC check failed"."""

    def __init__(self, inner: CipherProtocol) -> None:
        self.inner = inner

    def encrypt(self, plaintext: bytes) -> tuple[str, bytes]:
        return self.inner.encrypt(plaintext)

    def decrypt(self, ciphername: str, ciphertext: bytes) -> bytes:
        if ciphername != "aes":
            raise CheckpointDataRefused(f"Checkpoint data is encrypted with unknown cipher {ciphername!r}.")
        try:
            return self.inner.decrypt(ciphername, ciphertext)
        except ValueError:  # pycryptodome: "MAC check failed", or a ciphertext too short to hold one
            raise ConfigError(
                "CONVOMEM_ENCRYPTION_KEY does not decrypt this thread: it was saved with another key "
                "(or the stored data was altered). Set the key it was written with."
            ) from None


def parse_encryption_key(text: str) -> bytes:
    """The AES key from its base64 form; ValueError says how to make a good one.

    Base64 only (no raw passphrases): a typed string of the right length has far less entropy than
    its length suggests, and one unambiguous format cannot be misread as another.
    """
    try:
        key = base64.b64decode(text.strip(), validate=True)
    except (binascii.Error, ValueError):
        key = b""
    if len(key) not in AES_KEY_SIZES:
        raise ValueError(
            "CONVOMEM_ENCRYPTION_KEY must be the base64 encoding of 16, 24 or 32 random bytes "
            "(AES-128/192/256); make one with `openssl rand -base64 32`"
        )
    return key


def make_serializer(*, encryption_key: SecretStr | str | None = None) -> SerializerProtocol:
    """The checkpointer's serializer: strict msgpack, wrapped in AES-EAX when a key is given.

    Rows written before a key was set stay readable (EncryptedSerializer passes unencrypted formats
    through); once set, every new blob and write is encrypted.
    """
    strict = StrictSerializer()
    if encryption_key is None:
        return strict
    if isinstance(encryption_key, SecretStr):
        encryption_key = encryption_key.get_secret_value()
    aes = EncryptedSerializer.from_pycryptodome_aes(strict, key=parse_encryption_key(encryption_key))
    return EncryptedSerializer(_ExplainedCipher(aes.cipher), strict)


@dataclasses.dataclass(frozen=True, slots=True)
class _Sealed:
    """A plain channel value dressed as an object, so AsyncPostgresSaver stores it as a blob."""

    value: str | int | float | bool


class SealInlineValues(BaseCheckpointSaver[str]):
    """Saver mixin: with encryption on, plain channel values go to encrypted blobs, not the JSON column.

    AsyncPostgresSaver.aput keeps str, int, float and bool channel values (our `summary`,
    `memory_context`, `user_id`, ...) readable in the `checkpoint` JSONB column and sends only other
    values through the serializer. Wrapped, they take the blob path; the serializer unwraps them, so
    they load back as the same plain values. Every sealed channel is also listed in `new_versions`:
    upstream writes blobs only for those, and a channel unchanged since a checkpoint written before
    the key was set has no blob yet (the blob upsert is ON CONFLICT DO NOTHING, so re-listing costs
    one ignored row). Mix in before AsyncPostgresSaver.

    Upstream details (what aput inlines, which channels get a blob, the blob insert's ON CONFLICT DO
    NOTHING); pinned by
    tests/integration/test_upstream_pins.py::test_aput_inlines_plain_values_and_marks_delta_snapshots and
    tests/unit/test_upstream_pins.py::test_blob_upsert_keeps_the_first_value.
    """

    async def aput(
        self,
        config: RunnableConfig,
        checkpoint: Checkpoint,
        metadata: CheckpointMetadata,
        new_versions: ChannelVersions,
    ) -> RunnableConfig:
        if isinstance(self.serde, EncryptedSerializer):
            versions = checkpoint["channel_versions"]
            sealed = {
                name: _Sealed(value)
                for name, value in checkpoint["channel_values"].items()
                if isinstance(value, str | int | float | bool) and name in versions
            }
            if sealed:
                checkpoint = checkpoint.copy()
                checkpoint["channel_values"] = {**checkpoint["channel_values"], **sealed}
                new_versions = {**new_versions, **{name: versions[name] for name in sealed}}
        return await super().aput(config, checkpoint, metadata, new_versions)
