"""Assistants as files: one TOML file each in CONVOMEM_ASSISTANTS_DIR (default: the shipped examples).

A file names an assistant and overrides what it changes of the process's settings: instructions, reply
parameters, budgets, the extraction cadence (their ranges are nodes.config.TurnSettings', written once),
plus what only an assistant has: a description, a first message, a response schema, a model, tools and
the review default. Every field but `name` is optional.
"""

from __future__ import annotations

import tomllib
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any, Optional

from pydantic import BaseModel, ConfigDict, Field, ValidationError, create_model, field_validator

from graphs.tool_specs import load_tool
from nodes.config import GraphConfig, TurnSettings
from nodes.errors import ConfigError
from nodes.memory_tools import BUILTIN_TOOLS
from nodes.per_assistant import unknown_assistant
from nodes.reply_schema import schema_problem

__all__ = [
    "SHIPPED_DIR",
    "TURN_FIELDS",
    "AssistantFile",
    "AssistantRegistry",
    "check_tool",
    "load_assistants",
    "read_assistant_files",
]

SHIPPED_DIR = Path(__file__).parent / "assistant_files"
"""The examples shipped in the package (package data): the folder when CONVOMEM_ASSISTANTS_DIR is unset."""

TURN_FIELDS = (
    "instructions",
    "temperature",
    "max_tokens",
    "frequency_penalty",
    "prompt_tokens",
    "memory_tokens",
    "working_set_tokens",
    "recall_passages",
    "extract_every",
    "extract_on_new_content_only",
    "tool_rounds",
    "tool_choice",
)
"""The process settings (nodes.config.TurnSettings) an assistant file may override, with their ranges."""

_NAME = r"^[a-z0-9][a-z0-9_-]{0,62}$"


def check_tool(spec: str) -> str:
    """`spec` when it names a built-in tool or a tool by `package.module:attribute` (imported and made a
    tool, so a broken one fails when the file is read); else ValueError saying why, in one line."""
    if spec in BUILTIN_TOOLS:
        return spec
    if ":" not in spec:
        raise ValueError(
            f"unknown tool {spec!r}: name a built-in one ({', '.join(BUILTIN_TOOLS)}) or "
            "`package.module:attribute`"
        )
    try:
        load_tool(spec)
    except ConfigError as error:
        raise ValueError(str(error).rstrip(".")) from None
    return spec


def _optional(name: str) -> tuple[Any, Any]:
    """TurnSettings' field `name` (type, range, description) as optional: unset keeps the process's."""
    setting = TurnSettings.model_fields[name]
    constrained = Annotated[setting.annotation, *setting.metadata] if setting.metadata else setting.annotation
    return Optional[constrained], Field(default=None, description=setting.description)  # noqa: UP045


if TYPE_CHECKING:
    _TurnOverrides = BaseModel
else:
    _TurnOverrides = create_model(
        "_TurnOverrides",
        __config__=ConfigDict(extra="forbid", frozen=True),
        **{name: _optional(name) for name in TURN_FIELDS},
    )


class AssistantFile(_TurnOverrides):
    """One assistant file, validated; unknown keys are refused (a typo must not be silently ignored)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    name: str = Field(pattern=_NAME, description="How runs choose it: --assistant, context.assistant.")
    description: str = Field(default="", max_length=500)
    first_message: str | None = Field(
        default=None, min_length=1, max_length=4000, description="Opens every new thread, before the user."
    )
    response_schema: dict[str, Any] | None = Field(
        default=None, description="JSON Schema the reply must match (JSON, repaired once)."
    )
    model: str | None = Field(default=None, min_length=1, description="The model name (an OpenAI server).")
    tools: tuple[str, ...] = Field(
        default=(), description="Built-in tool names or `package.module:attribute`."
    )
    review_memory: bool | None = Field(default=None, description="Review memory on new messages by default.")

    @field_validator("response_schema")
    @classmethod
    def _valid_schema(cls, value: dict[str, Any] | None) -> dict[str, Any] | None:
        problem = None if value is None else schema_problem(value)
        if problem is not None:
            raise ValueError(f"not a JSON Schema: {problem}")
        return value

    @field_validator("tools")
    @classmethod
    def _known_tools(cls, value: tuple[str, ...] | None) -> tuple[str, ...] | None:
        return None if value is None else tuple(check_tool(spec.strip()) for spec in value)

    def overrides(self) -> dict[str, Any]:
        """The process settings this assistant changes."""
        return self.model_dump(include=set(TURN_FIELDS), exclude_none=True)

    def graph_config(self, base: GraphConfig, tool_names: Sequence[str] = ()) -> GraphConfig:
        """The process's configuration with this assistant's settings (already checked against the same
        ranges by this model). The process's tool_choice holds only when the assistant has that tool."""
        update = self.overrides()
        if "tool_choice" not in update and base.tool_choice not in ("auto", *tool_names):
            update["tool_choice"] = "auto"
        return base.model_copy(update=update)


def _problem(path: Path, error: ValidationError) -> str:
    """A validation error as one line naming the file and the field."""
    first = error.errors()[0]
    where = ".".join(str(part) for part in first["loc"])
    message = str(first["msg"]).removeprefix("Value error, ")
    return f"{path}: {where}: {message}" if where else f"{path}: {message}"


def _read_one(path: Path) -> AssistantFile:
    """The file as an AssistantFile; ConfigError (one line naming the file and the field) otherwise."""
    try:
        data = tomllib.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError) as error:
        raise ConfigError(f"{path}: cannot read it ({error})") from None
    except tomllib.TOMLDecodeError as error:
        raise ConfigError(f"{path}: not valid TOML ({error})") from None
    try:
        return AssistantFile.model_validate(data)
    except ValidationError as error:
        raise ConfigError(_problem(path, error)) from None


@dataclass(frozen=True)
class AssistantRegistry:
    """The assistants of a process, by name, with the file each came from."""

    folder: Path
    assistants: Mapping[str, AssistantFile] = field(default_factory=dict)
    files: Mapping[str, Path] = field(default_factory=dict)

    def names(self) -> list[str]:
        return sorted(self.assistants)

    def get(self, name: str) -> AssistantFile:
        """The assistant `name`; InvalidInput listing the known ones otherwise."""
        found = self.assistants.get(name)
        if found is None:
            raise unknown_assistant(name, self.names())
        return found

    def check_name(self, name: str | None) -> str | None:
        """`name` when it is None or a known assistant; InvalidInput listing the known ones otherwise."""
        return None if name is None else self.get(name).name


def read_assistant_files(folder: Path) -> tuple[AssistantRegistry, list[str]]:
    """Every `*.toml` file of `folder` that is valid, and one line per file that is not."""
    if not folder.is_dir():
        return AssistantRegistry(folder), [f"{folder}: not a folder (CONVOMEM_ASSISTANTS_DIR)"]
    assistants: dict[str, AssistantFile] = {}
    files: dict[str, Path] = {}
    problems: list[str] = []
    for path in sorted(folder.glob("*.toml")):
        try:
            assistant = _read_one(path)
        except ConfigError as error:
            problems.append(str(error))
            continue
        if assistant.name in files:
            problems.append(
                f"{path}: name: {assistant.name!r} is already the name of {files[assistant.name]}"
            )
            continue
        assistants[assistant.name] = assistant
        files[assistant.name] = path
    return AssistantRegistry(folder, assistants, files), problems


def load_assistants(folder: Path) -> AssistantRegistry:
    """The folder's assistants; ConfigError with the first broken file's line (`convomem assistants
    check` lists them all)."""
    registry, problems = read_assistant_files(folder)
    if problems:
        more = (
            f" (and {len(problems) - 1} more: run `convomem assistants check`)" if len(problems) > 1 else ""
        )
        raise ConfigError(problems[0] + more)
    return registry
