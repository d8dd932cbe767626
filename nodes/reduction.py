"""Which messages leave the working set: pure rules that never break a turn."""

from __future__ import annotations

from collections.abc import Sequence

from langchain_core.messages import AIMessage, AnyMessage, HumanMessage, SystemMessage, ToolMessage

from nodes.tokens import count_tokens

__all__ = ["allowed_cuts", "messages_to_fold"]


def allowed_cuts(messages: Sequence[AnyMessage]) -> list[int]:
    """Positions `c` (ascending) where folding the non-system messages of `messages[:c]` breaks no turn.

    A cut is allowed when it stays at or before the newest human message, separates no AI tool call
    from any of its results, leaves the conversation starting on something other than a tool result,
    and folds only messages with an id (a message without one could not be removed afterwards, so it
    would end up both in the summary and in the working set).
    """
    limit = next(
        (i for i in range(len(messages) - 1, -1, -1) if isinstance(messages[i], HumanMessage)), len(messages)
    )
    first_without_id = next(
        (i for i, m in enumerate(messages) if not m.id and not isinstance(m, SystemMessage)), len(messages)
    )
    called_at = {  # malformed calls count too: respond answers them with an error tool message
        call_id: i
        for i, m in enumerate(messages)
        if isinstance(m, AIMessage)
        for call_id in [c["id"] for c in m.tool_calls] + [c.get("id") for c in m.invalid_tool_calls]
        if call_id
    }
    inside_a_call: set[int] = set()
    for j, m in enumerate(messages):
        if isinstance(m, ToolMessage) and (i := called_at.get(m.tool_call_id)) is not None:
            inside_a_call.update(range(min(i, j) + 1, max(i, j) + 1))
    starts_on_tool: list[bool] = []
    first: AnyMessage | None = None
    for message in reversed(messages):
        first = first if isinstance(message, SystemMessage) else message
        starts_on_tool.append(isinstance(first, ToolMessage))
    starts_on_tool.reverse()
    return [
        cut
        for cut in range(min(limit, first_without_id) + 1)
        if cut not in inside_a_call and not (cut < len(messages) and starts_on_tool[cut])
    ]


def messages_to_fold(
    messages: Sequence[AnyMessage], budget_tokens: int, keep_tokens: int | None = None
) -> list[AnyMessage]:
    """Oldest messages to fold into the summary once the working set exceeds `budget_tokens`.

    Folds until what stays (system messages included) fits `keep_tokens` (half the budget by default, so
    folding happens in batches rather than every turn), moving the cut forward to the next allowed one
    (see `allowed_cuts`); it stops at the last allowed cut when nothing later may fold. System messages
    never fold. Tool results whose call already left the working set fold even under budget: a working
    set may not start with them.
    """
    cuts = allowed_cuts(messages)
    if not cuts:
        return []
    total = count_tokens(messages)
    if total <= budget_tokens:
        return [m for m in messages[: cuts[0]] if not isinstance(m, SystemMessage)]
    keep = budget_tokens // 2 if keep_tokens is None else keep_tokens
    staying, wanted = total, 0  # count_tokens adds up per message: what stays is the total minus what folds
    while wanted < cuts[-1] and staying > keep:
        if not isinstance(messages[wanted], SystemMessage):
            staying -= count_tokens([messages[wanted]])
        wanted += 1
    cut = next(c for c in cuts if c >= wanted)
    return [m for m in messages[:cut] if not isinstance(m, SystemMessage)]
