"""Which messages leave the working set: pure rules that never break a turn."""

from __future__ import annotations

from collections.abc import Sequence

from langchain_core.messages import AnyMessage, HumanMessage, SystemMessage, ToolMessage

from nodes.tokens import count_tokens

__all__ = ["messages_to_fold"]


def messages_to_fold(
    messages: Sequence[AnyMessage], budget_tokens: int, keep_tokens: int | None = None
) -> list[AnyMessage]:
    """Oldest messages to fold into the summary once the working set exceeds `budget_tokens`.

    Folds until what stays fits `keep_tokens` (half the budget by default, so folding happens in batches
    rather than every turn). The cut never passes the newest human message, never leaves a tool
    result without the AI message that called it (or the reverse), and system messages never fold.
    """
    if count_tokens(messages) <= budget_tokens:
        return []
    keep = budget_tokens // 2 if keep_tokens is None else keep_tokens
    newest_human = max(
        (i for i, m in enumerate(messages) if isinstance(m, HumanMessage)), default=len(messages)
    )
    cut = 0
    while cut < newest_human and count_tokens(messages[cut:]) > keep:
        cut += 1
    while cut < newest_human and isinstance(messages[cut], ToolMessage):
        cut += 1
    return [m for m in messages[:cut] if not isinstance(m, SystemMessage)]
