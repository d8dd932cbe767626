"""Running one option on the real local model: extraction through request_extraction, recall through
real graph turns (graphs.api.open_convomem on the embedded Postgres)."""

from __future__ import annotations

import asyncio
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from langchain_openai import ChatOpenAI

from bench.db import create_database
from bench.memory_eval.cases import RecallCase, Sentence
from bench.memory_eval.options import Option
from bench.memory_eval.scoring import SentenceScore, html_entities, judge_junk, loops, score_sentence
from graphs.api import open_convomem
from graphs.models import shared_recognizer
from graphs.settings import Settings
from nodes.extraction_request import make_extractor, request_extraction
from nodes.models import LOCAL_MODEL_NAME, LocalModelServer, make_chat_model
from nodes.tokens import text_of

__all__ = ["LONG_PROMPTS", "RecallResult", "extraction_pass", "long_replies", "recall_pass", "running_server"]

TIMEOUT_S = 900.0
"""Per model request: this machine is shared, and a 2-core box under load gives a few tokens a second."""


@dataclass
class RecallResult:
    case_id: str
    correct: bool
    reply: str
    looped: bool
    html_entities: int
    turn_seconds: list[float] = field(default_factory=list)
    junk: list[str] = field(default_factory=list)


def running_server(option: Option, cache: Path, log: Path, threads: int) -> LocalModelServer:
    """The option's llama.cpp server, owned by this process (started by the caller's `with`)."""
    return LocalModelServer(
        option.model_file(cache), log_file=log, threads=threads, chat_format=option.chat_format
    )


def _local_model(base_url: str) -> ChatOpenAI:
    """The client graphs.models.shared_chat_model makes for the embedded model (max_tokens as llama.cpp
    reads it), pointed at this option's server."""
    return make_chat_model(
        model=LOCAL_MODEL_NAME, base_url=base_url, api_key=None, timeout=TIMEOUT_S, legacy_max_tokens=True
    )


async def extraction_pass(option: Option, base_url: str, sentences: list[Sentence]) -> list[SentenceScore]:
    """Each sentence through request_extraction, bound exactly as the extract_entities node binds it."""
    model = _local_model(base_url)
    method: Any = option.extraction_method
    extractor = make_extractor(model, method, max_attempts=3)
    recognizer = await asyncio.to_thread(shared_recognizer, option.entity_recognizer)
    scores = []
    for sentence in sentences:
        started = time.perf_counter()
        result = await request_extraction(
            extractor, sentence.text, recognizer=recognizer, examples=option.extraction_examples
        )
        scores.append(score_sentence(sentence, result, time.perf_counter() - started))
    return scores


async def _turn(cm: Any, thread: str, text: str, user: str) -> tuple[str, float]:
    started = time.perf_counter()
    async for _event in cm.chat(thread, text, user_id=user):
        pass
    elapsed = time.perf_counter() - started
    messages = (await cm.state(thread)).values.get("messages") or []
    replies = [m for m in messages if m.type == "ai"]
    return (text_of(replies[-1]) if replies else ""), elapsed


LONG_PROMPTS = (
    "Tell me a short story about a lighthouse keeper.",
    "Explain how a bicycle works.",
    "Describe your perfect weekend in detail.",
)
"""Replies long enough to loop: a paragraph repeated until the cap was the issue's complaint."""


async def long_replies(
    option: Option, base_url: str, *, url: str, data_dir: Path, count: int, max_tokens: int
) -> list[RecallResult]:
    """`count` open-ended turns capped at `max_tokens`: do replies loop, do HTML entities reach them?"""
    settings = _settings(option, base_url, url=url, data_dir=data_dir, max_tokens=max_tokens)
    results = []
    async with open_convomem(settings, model=_local_model(base_url)) as cm:
        for n in range(count):
            prompt = LONG_PROMPTS[n % len(LONG_PROMPTS)]
            reply, seconds = await _turn(cm, f"long-{n}", prompt, f"long-{n}")
            results.append(
                RecallResult(f"long-{n}", False, reply, loops(reply), html_entities(reply), [seconds])
            )
    return results


def _settings(option: Option, base_url: str, *, url: str, data_dir: Path, max_tokens: int) -> Settings:
    return Settings(
        database_url=url,
        data_dir=data_dir,
        openai_base_url=base_url,
        openai_api_key=None,
        model=LOCAL_MODEL_NAME,
        model_timeout=TIMEOUT_S,
        max_tokens=max_tokens,
        **option.settings(),
    )


async def recall_pass(
    option: Option,
    base_url: str,
    cases: list[RecallCase],
    *,
    root_url: str,
    data_dir: Path,
    run: int,
    max_tokens: int,
) -> list[RecallResult]:
    """Per case: the statement on one thread, the question on a new thread of the same user, both real
    graph turns (respond, extract_entities, summarize, reduce_history) in a fresh database."""
    name = f"memory_eval_{option.name}_{run}".replace("+", "_")
    url = await asyncio.to_thread(create_database, root_url, name)
    settings = _settings(option, base_url, url=url, data_dir=data_dir, max_tokens=max_tokens)
    results = []
    async with open_convomem(settings, model=_local_model(base_url)) as cm:
        for case in cases:
            user = f"eval-{run}-{case.id}"
            _, told = await _turn(cm, f"{user}-tell", case.statement, user)
            stored = [e.value for e in await cm.entities(user)]
            profile = await cm.profile(user)
            if profile is not None and profile.name:
                stored.append(profile.name)
            if profile is not None:
                stored.extend(profile.current_facts().values())
            reply, asked = await _turn(cm, f"{user}-ask", case.question, user)
            results.append(
                RecallResult(
                    case.id,
                    case.answered(reply),
                    reply,
                    loops(reply),
                    html_entities(reply),
                    [told, asked],
                    [f"{v!r} ({why})" for v in stored if (why := judge_junk(v, case.statement))],
                )
            )
    return results
