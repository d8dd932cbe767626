"""Token counting and prompt fitting with langchain-core's utilities (no tokenizer download)."""

from __future__ import annotations

from collections.abc import Sequence

from langchain_core.messages import AnyMessage, BaseMessage, HumanMessage, trim_messages
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
    see what the user just said.
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
    newest_human = next((m for m in reversed(messages) if isinstance(m, HumanMessage)), None)
    if newest_human is None:
        return []
    text = text_of(newest_human)
    room_chars = max(max_tokens * 4 - 16, 0)
    return [HumanMessage(content=text[len(text) - min(room_chars, len(text)) :], id=newest_human.id)]
