"""How a turn behaves: the graph's construction-time configuration, with every default and range once."""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator

from nodes.prompts import DEFAULT_INSTRUCTIONS

__all__ = ["DEFAULT_USER_ID", "LOCAL_MODEL_DEFAULTS", "GraphConfig", "TurnSettings", "for_model"]

DEFAULT_USER_ID = "default"
"""Whose memory a run uses when neither the caller nor the thread names a user."""


class TurnSettings(BaseModel):
    """The settings that shape a turn, read from the environment by graphs.settings.Settings (which
    inherits these fields, so `CONVOMEM_<NAME>` sets each) and frozen into GraphConfig for build_graph.
    This class is the one place their defaults and ranges are written."""

    user_id: str = Field(default=DEFAULT_USER_ID, description="User when a run names none.")
    instructions: str = Field(default=DEFAULT_INSTRUCTIONS, description="The assistant's instructions.")
    prompt_tokens: int = Field(default=3000, ge=256, description="Budget for everything respond sends.")
    working_set_tokens: int = Field(
        default=1500, ge=64, description="Working-set size that triggers a fold (folds down to half)."
    )
    memory_tokens: int = Field(default=400, ge=0, description="Budget for remembered facts in the prompt.")
    recall_passages: int = Field(
        default=3,
        ge=0,
        le=20,
        description="Passages of the user's other conversations brought into each turn's memory; 0: none.",
    )
    max_message_bytes: int = Field(default=32 * 1024, ge=1, description="Longest accepted user message.")
    extract_every: int = Field(default=1, ge=1, le=100, description="Extract entities every N human turns.")
    extract_on_new_content_only: bool = Field(
        default=False, description="Skip extraction on turns with only acknowledgements or known names."
    )
    temperature: float = Field(default=0.2, ge=0.0, le=2.0, description="Sampling temperature of replies.")
    max_tokens: int = Field(default=1024, ge=1, le=65536, description="Longest reply, in tokens.")
    frequency_penalty: float | None = Field(
        default=None,
        ge=-2.0,
        le=2.0,
        description="Penalty on tokens a reply repeats (stops loops); unset: the embedded model's default.",
    )
    extraction_method: Literal["auto", "function_calling", "json_schema", "none"] = Field(
        default="auto",
        description="How extraction asks the model: a forced tool call, JSON under the schema's grammar "
        "(llama.cpp), or none (the recognizer alone); auto: the embedded model's default, else tool call.",
    )
    extraction_examples: bool | None = Field(
        default=None, description="Worked examples in the extraction prompt; unset: on for the local model."
    )
    entity_recognizer: Literal["auto", "spacy", "none"] = Field(
        default="auto",
        description="Offline NER first pass before the model (spaCy); auto: on with the embedded model.",
    )
    memory_style: Literal["auto", "list", "sentences"] = Field(
        default="auto",
        description="How memory is written for respond: a labelled list, or plain sentences to the user that "
        "a small model repeats back; auto: sentences on the embedded model.",
    )
    model_retries: int = Field(
        default=3, ge=1, le=10, description="Attempts on transient model errors (connection, 429, 5xx)."
    )
    step_history_turns: int = Field(
        default=20,
        ge=0,
        description="Turns whose every step checkpoint is kept; older turns keep their last.",
    )
    compact_every: int = Field(default=10, ge=0, description="Compact a thread every N turns; 0: never.")
    tool_rounds: int = Field(
        default=4,
        ge=0,
        le=20,
        description="Tool rounds respond may run a turn; then the model answers without tools. 0: no tools.",
    )
    tool_timeout_seconds: float = Field(
        default=30.0, gt=0, le=3600, description="A tool call still running after this is stopped (error)."
    )
    tool_choice: str = Field(
        default="auto",
        pattern=r"^[A-Za-z_][A-Za-z0-9_-]{0,63}$",
        description="auto: the model decides; a tool's name: the turn's first round calls it (grammar-"
        "constrained on llama.cpp, so a small model still calls it well), later rounds decide freely.",
    )

    @field_validator("instructions", mode="before")
    @classmethod
    def _blank_is_default(cls, value: object) -> object:
        """`CONVOMEM_INSTRUCTIONS=` (set but empty) means the default, as shells and .env files write it."""
        return (
            DEFAULT_INSTRUCTIONS if value is None or (isinstance(value, str) and not value.strip()) else value
        )


class GraphConfig(TurnSettings):
    """Everything build_graph needs besides its collaborators; built once per process from Settings."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    semantic_memory: bool = Field(
        default=False, description="Entities are embedded and matched by meaning (the store has an index)."
    )


LOCAL_MODEL_DEFAULTS: dict[str, object] = {
    "frequency_penalty": 0.3,
    "extraction_method": "none",
    "extraction_examples": True,
    "entity_recognizer": "spacy",
    "memory_style": "sentences",
}
"""What "auto"/unset means on the embedded model, chosen from `python -m bench.memory_eval` (README)."""

REMOTE_MODEL_DEFAULTS: dict[str, object] = {
    "extraction_method": "function_calling",
    "extraction_examples": False,
    "entity_recognizer": "none",
    "memory_style": "list",
}


def for_model(config: GraphConfig, *, local: bool) -> GraphConfig:
    """`config` with every "auto"/unset model-dependent field resolved for the embedded model or not."""
    defaults = LOCAL_MODEL_DEFAULTS if local else REMOTE_MODEL_DEFAULTS
    unset = {key for key in defaults if getattr(config, key, None) in (None, "auto")}
    return config.model_copy(update={key: defaults[key] for key in unset})
