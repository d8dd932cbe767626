"""Token counting and prompt fitting with langchain-core's utilities (no tokenizer download)."""

from __future__ import annotations

from collections.abc import Sequence

from langchain_core.messages import AnyMessage, BaseMessage, HumanMessage, ToolMessage, trim_messages
from langchain_core.messages.utils import count_tokens_approximately

__all__ = ["count_tokens", "fit_window", "text_of"]


def count_tokens(messages: Sequence[BaseMessage]) -> int:
    """Approximate token count; deterministic, fast, no tokenizer download, good enough for budgets.

    Additive: the count of a list is the sum of its messages' counts (langchain-core rounds per message;
    usage-metadata scaling, which would make it depend on the neighbours, stays off), so reduction can
    subtract what leaves the working set.
    """
    return count_tokens_approximately(messages, use_usage_metadata_scaling=False)


def text_of(message: BaseMessage) -> str:
    """Plain text of a message whatever its content shape."""
    return message.text if isinstance(message.text, str) else str(message.content)


def fit_window(messages: Sequence[AnyMessage], max_tokens: int) -> list[AnyMessage]:
    """Newest messages that fit `max_tokens`, starting on a human turn so tool pairs stay whole.

    When even the newest human message alone is over budget it is cut to fit: the model must always
    see what the user just said. So is the turn's tool traffic after it, when it does not fit whole:
    every call stays with its result, and the results are cut to share what room is left.
    """
    window: list[AnyMessage] = trim_messages(  # type: ignore[assignment]
        list(messages),
        max_tokens=max(max_tokens, 1),
        token_counter=count_tokens_approximately,
        strategy="last",
        start_on="human",
        allow_partial=False,
    )
    if window or not messages:
        return list(window)
    at = next((i for i in range(len(messages) - 1, -1, -1) if isinstance(messages[i], HumanMessage)), None)
    if at is None:
        return []
    newest_human, tail = messages[at], list(messages[at + 1 :])
    text = text_of(newest_human)
    room_chars = max((max_tokens // 2 if tail else max_tokens) * 4 - 16, 0)
    human = HumanMessage(content=text[len(text) - min(room_chars, len(text)) :], id=newest_human.id)
    return [human, *_squeezed(tail, max_tokens - count_tokens([human]))]


def _squeezed(tail: list[AnyMessage], max_tokens: int) -> list[AnyMessage]:
    """`tail` with its tool results cut to share what room the other messages leave (40 characters
    each at least: a result the model cannot read would make it call the tool again)."""
    results = [m for m in tail if isinstance(m, ToolMessage)]
    fixed = count_tokens([m for m in tail if not isinstance(m, ToolMessage)])
    share = max((max_tokens - fixed) * 4 // max(len(results), 1) - 16, 40)
    return [
        m.model_copy(update={"content": text_of(m)[: share - 1] + "…"})
        if isinstance(m, ToolMessage) and len(text_of(m)) > share
        else m
        for m in tail
    ]
