"""Smoke test on the real embedded model (SmolLM2 via llama.cpp's server): one whole turn, nothing faked."""

from __future__ import annotations

import importlib.util
from pathlib import Path

import pytest

from graphs.api import ReplyToken, open_convomem
from graphs.settings import Settings
from nodes.model_server import stop_server

pytestmark = pytest.mark.local_llm


async def test_one_real_turn_on_the_local_model(database_url: str, tmp_path: Path) -> None:
    assert importlib.util.find_spec("llama_cpp"), "install the `local` extra: pip install -e '.[local]'"
    settings = Settings(
        database_url=database_url, data_dir=tmp_path, openai_api_key=None, openai_base_url=None
    )
    assert settings.uses_local_model
    tokens: list[str] = []
    try:
        async with open_convomem(settings) as cm:
            async for event in cm.chat(
                "smoke", "Hello! My name is Ada and I live in Lisbon.", user_id="smoke"
            ):
                if isinstance(event, ReplyToken):
                    tokens.append(event.text)
            state = await cm.state("smoke")
    finally:
        stop_server(tmp_path)  # the shared server outlives the process: this test's is stopped here
    assert len(tokens) > 1, "the reply streamed token by token"
    assert not state.next, "the turn ran every node"
    assert [m.type for m in state.values["messages"]] == ["human", "ai"]
    assert "extraction" in state.values, "extract_entities ran (its model call may still fail validation)"
