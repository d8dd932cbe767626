"""Settings read once at the composition root (environment, prefix CONVOMEM_; OpenAI SDK's own variables)."""

from __future__ import annotations

from pathlib import Path
from typing import Literal

from platformdirs import user_data_dir
from pydantic import AliasChoices, Field, SecretStr, field_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

from checkpoint.ids import validate_user_id
from graphs.logs import LogFormat, LogLevel
from nodes.config import GraphConfig, TurnSettings
from nodes.errors import InvalidInput

__all__ = ["MIN_TOKEN_LENGTH", "Durability", "Settings", "graph_config", "parse_api_tokens"]

Durability = Literal["sync", "async", "exit"]
MIN_TOKEN_LENGTH = 8


def parse_api_tokens(text: str) -> dict[str, str]:
    """`token:identity,token:identity` as {token: identity}; ValueError names the bad entry.

    Several tokens may name one identity (rotation); one token naming two identities is refused,
    since whichever won would silently decide whose threads a caller sees.
    """
    table: dict[str, str] = {}
    for position, entry in enumerate(text.split(","), start=1):
        token, _, identity = entry.strip().partition(":")
        if not token or not identity:
            raise ValueError(f"CONVOMEM_API_TOKENS entry {position} is not `token:identity`")
        if len(token) < MIN_TOKEN_LENGTH or any(c.isspace() or c == "," for c in token):
            raise ValueError(
                f"CONVOMEM_API_TOKENS entry {position}: a token needs {MIN_TOKEN_LENGTH}+ characters and "
                "no spaces (make one with `openssl rand -hex 24`)"
            )
        try:
            validate_user_id(identity, "identity")
        except InvalidInput as error:
            raise ValueError(f"CONVOMEM_API_TOKENS entry {position}: {error}") from None
        if table.setdefault(token, identity) != identity:
            raise ValueError(f"CONVOMEM_API_TOKENS entry {position} reuses a token for another identity")
    return table


class Settings(TurnSettings, BaseSettings):
    """Everything configurable; tests build `Settings(...)` explicitly instead of touching the environment.

    The fields that shape a turn (instructions, budgets, cadences, model parameters) are inherited from
    nodes.config.TurnSettings, where their defaults and ranges are written once."""

    model_config = SettingsConfigDict(env_prefix="CONVOMEM_", extra="ignore", populate_by_name=True)

    database_url: str | None = Field(
        default=None,
        validation_alias=AliasChoices("DATABASE_URL", "CONVOMEM_DATABASE_URL"),
        description="Any Postgres; unset starts the embedded server in data_dir.",
    )
    data_dir: Path = Field(default_factory=lambda: Path(user_data_dir("convomem")))
    openai_api_key: SecretStr | None = Field(default=None, validation_alias="OPENAI_API_KEY")
    openai_base_url: str | None = Field(default=None, validation_alias="OPENAI_BASE_URL")
    model: str = Field(default="gpt-4o-mini", description="Model name when a key or base URL is set.")
    model_timeout: float = 120.0
    embedding_model: str | None = Field(
        default=None,
        description="An OpenAI-compatible embedding model: semantic entity resolution and recall (pgvector).",
    )
    embedding_dims: int = Field(default=1536, ge=1, le=16000)
    durability: Durability = "sync"
    log_level: LogLevel | None = Field(
        default=None,
        description="convomem's log level; unset: the CLI and server log warnings, the Python API leaves "
        "logging to the application.",
    )
    log_format: LogFormat = Field(default="text", description="text, or json: one object per line.")
    transcript_language: str = Field(
        default="english",
        pattern=r"^[A-Za-z_][A-Za-z0-9_]{0,62}$",
        description="Text search configuration of the transcript (SELECT cfgname FROM pg_ts_config).",
    )
    encryption_key: SecretStr | None = Field(
        default=None,
        description="Base64 of 16/24/32 random bytes: AES-encrypts checkpoint blobs and writes at rest.",
    )
    assistants_dir: Path | None = Field(
        default=None,
        description="The folder of assistant files (*.toml); unset: the examples shipped with convomem.",
    )
    assistant: str | None = Field(
        default=None,
        description="The assistant of runs that name none on threads that have none; unset: these settings.",
    )
    tools: str = Field(
        default="auto",
        description="Built-in memory tools respond may call: all, none, or a comma list "
        "(search_conversations, recall_entity, remember, forget); auto: all, except on the embedded model.",
    )
    api_tokens: SecretStr | None = Field(
        default=None,
        description="LangGraph Server bearer tokens, `token:identity,...`; unset: loopback-only single user.",
    )

    allowed_origins: str = Field(
        default="https://smith.langchain.com",
        description="Web origins (comma list) besides the server's own that may send LangGraph Server "
        "state-changing requests from a browser (LangGraph Studio's by default); the console: its own only.",
    )

    @field_validator("encryption_key", "api_tokens", "assistants_dir", "assistant", mode="before")
    @classmethod
    def _blank_is_unset(cls, value: object) -> object:
        """An empty variable (`CONVOMEM_ENCRYPTION_KEY=`) means unset, as shells and .env files write it."""
        text = value.get_secret_value() if isinstance(value, SecretStr) else value
        return None if isinstance(text, str) and not text.strip() else value

    @field_validator("user_id")
    @classmethod
    def _valid_user(cls, value: str) -> str:
        try:
            return validate_user_id(value)
        except InvalidInput as error:
            raise ValueError(str(error)) from None

    @field_validator("encryption_key")
    @classmethod
    def _decodable_key(cls, value: SecretStr | None) -> SecretStr | None:
        if value is not None:
            from checkpoint.serde import parse_encryption_key  # loads LangGraph: only when a key is set

            parse_encryption_key(value.get_secret_value())
        return value

    @field_validator("api_tokens")
    @classmethod
    def _parsable_tokens(cls, value: SecretStr | None) -> SecretStr | None:
        if value is not None:
            parse_api_tokens(value.get_secret_value())
        return value

    @property
    def api_token_table(self) -> dict[str, str]:
        """{token: identity}, empty when no tokens are configured."""
        return parse_api_tokens(self.api_tokens.get_secret_value()) if self.api_tokens else {}

    @property
    def allowed_origin_set(self) -> frozenset[str]:
        return frozenset(o.strip().rstrip("/") for o in self.allowed_origins.split(",") if o.strip())

    @property
    def assistants_folder(self) -> Path:
        """Where the assistant files are: CONVOMEM_ASSISTANTS_DIR, else the shipped examples."""
        from graphs.assistants import SHIPPED_DIR

        return self.assistants_dir or SHIPPED_DIR

    @property
    def semantic_memory(self) -> bool:
        """Entities are embedded and matched by meaning as well as by name."""
        return bool(self.embedding_model)

    @property
    def uses_local_model(self) -> bool:
        return self.openai_api_key is None and not self.openai_base_url


def graph_config(settings: Settings) -> GraphConfig:
    """The frozen configuration build_graph takes: the same for the API, the CLI and LangGraph Server."""
    turn = settings.model_dump(include=set(TurnSettings.model_fields))
    return GraphConfig(**turn, semantic_memory=settings.semantic_memory)
