"""Settings read once at the composition root (environment, prefix CONVOMEM_; OpenAI SDK's own variables)."""

from __future__ import annotations

from pathlib import Path
from typing import Literal

from platformdirs import user_data_dir
from pydantic import AliasChoices, Field, SecretStr
from pydantic_settings import BaseSettings, SettingsConfigDict

__all__ = ["Durability", "Settings"]

Durability = Literal["sync", "async", "exit"]


class Settings(BaseSettings):
    """Everything configurable; tests build `Settings(...)` explicitly instead of touching the environment."""

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
    model_retries: int = Field(default=3, ge=1, le=10)
    user_id: str = "default"
    instructions: str | None = None
    prompt_tokens: int = Field(default=3000, ge=256)
    working_set_tokens: int = Field(default=1500, ge=64)
    memory_tokens: int = Field(default=400, ge=0)
    max_message_bytes: int = Field(default=32 * 1024, ge=1)
    durability: Durability = "sync"

    @property
    def uses_local_model(self) -> bool:
        return self.openai_api_key is None and not self.openai_base_url
