"""Replies of the embedded model: a chat format that does not HTML-escape, a repeat penalty, memory written
as sentences it repeats back, and the local defaults."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from langchain_core.messages import HumanMessage
from langchain_core.outputs import ChatResult
from pydantic import Field

from nodes.config import LOCAL_MODEL_DEFAULTS, GraphConfig, for_model
from nodes.memory import EntityRecord
from nodes.memory_text import SENTENCES_HEADER, mentioned_text, profile_sentences
from nodes.models import LOCAL_CHAT_FORMAT, REPEAT_WINDOW_TOKENS, LocalModelServer
from nodes.profile import FactVersion, UserProfile
from nodes.respond import make_respond
from tests.support.fakes import RecordingChatModel

TEXT = "you're <b>\"right\"</b> & I'm sure"


def test_the_local_server_uses_a_chat_format_that_keeps_text_as_written() -> None:
    llama_chat_format = pytest.importorskip("llama_cpp.llama_chat_format")
    command = LocalModelServer(Path("model.gguf"), log_file=Path("log")).command(8000)
    assert command[command.index("--chat_format") + 1] == LOCAL_CHAT_FORMAT
    assert command[command.index("--last_n_tokens_size") + 1] == str(REPEAT_WINDOW_TOKENS)
    prompt = getattr(llama_chat_format, f"format_{LOCAL_CHAT_FORMAT}")(
        messages=[{"role": "system", "content": TEXT}, {"role": "user", "content": TEXT}]
    ).prompt
    assert prompt.count(TEXT) == 2
    assert "&#39;" not in prompt and "&amp;" not in prompt and "&lt;" not in prompt


class KwargsModel(RecordingChatModel):
    """Keeps the request parameters respond binds."""

    calls: list[dict[str, Any]] = Field(default_factory=list)

    def _generate(
        self, messages: Any, stop: Any = None, run_manager: Any = None, **kwargs: Any
    ) -> ChatResult:
        self.calls.append(kwargs)
        return super()._generate(messages, stop=stop, run_manager=run_manager, **kwargs)


@pytest.mark.parametrize(("penalty", "sent"), [(0.3, {"frequency_penalty": 0.3}), (None, {})])
async def test_respond_sends_the_frequency_penalty_only_when_set(
    penalty: float | None, sent: dict[str, Any]
) -> None:
    model = KwargsModel(messages=iter(["Hi."]))
    config = GraphConfig(frequency_penalty=penalty, max_tokens=64, temperature=0.1)
    node = make_respond(model, config)
    await node({"messages": [HumanMessage("hello", id="h1")]}, None)  # type: ignore[arg-type]
    [kwargs] = model.calls
    assert {k: kwargs[k] for k in ("max_tokens", "temperature")} == {"max_tokens": 64, "temperature": 0.1}
    assert {k: v for k, v in kwargs.items() if k == "frequency_penalty"} == sent


def test_auto_settings_follow_the_model() -> None:
    local = for_model(GraphConfig(), local=True)
    assert {key: getattr(local, key) for key in LOCAL_MODEL_DEFAULTS} == LOCAL_MODEL_DEFAULTS
    remote = for_model(GraphConfig(), local=False)
    assert (remote.extraction_method, remote.entity_recognizer, remote.frequency_penalty) == (
        "function_calling",
        "none",
        None,
    )
    chosen = for_model(GraphConfig(extraction_method="json_schema", frequency_penalty=0.0), local=True)
    assert (chosen.extraction_method, chosen.frequency_penalty) == ("json_schema", 0.0)


def test_memory_as_sentences_puts_the_facts_first_in_the_second_person() -> None:
    t0, t1 = "2026-01-01T00:00:00+00:00", "2026-06-01T00:00:00+00:00"
    profile = UserProfile(
        name="Ada Lovelace",
        facts={
            "lives_in": [
                FactVersion(value="Paris", valid_from=t0, valid_to=t1),
                FactVersion(value="Lisbon", valid_from=t1),
            ],
            "works_at": [FactVersion(value="Acme", valid_from=t0)],
            "favourite_band": [FactVersion(value="Queen", valid_from=t0)],
        },
    )
    assert profile_sentences(profile, 200).splitlines() == [
        SENTENCES_HEADER,
        "You live in Lisbon.",
        "You used to live in Paris.",
        "You work at Acme.",
        "Your favourite band is Queen.",
        "Your name is Ada Lovelace.",
    ]
    record = EntityRecord(type="TECH", value="Kubernetes", first_seen=t0, last_seen=t0, mentions=1)
    assert mentioned_text([record, record.model_copy(update={"value": "Rust"})], 200) == (
        "You have also mentioned: Kubernetes, Rust.",
        ["Kubernetes", "Rust"],
    )
    assert mentioned_text([record], 3) == ("", [])
