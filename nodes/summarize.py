"""summarize: fold the oldest working-set messages into the running summary once over budget."""

from __future__ import annotations

import logging
from collections.abc import Sequence

from langchain_core.language_models import BaseChatModel
from langchain_core.messages import AnyMessage, HumanMessage, SystemMessage
from langgraph.runtime import Runtime

from nodes.models import with_transient_retry
from nodes.prompts import SUMMARY_SYSTEM
from nodes.reduction import messages_to_fold
from nodes.state import Context, Node, State, Update
from nodes.tokens import text_of

__all__ = ["MAX_SUMMARY_CHARS", "make_summarize", "summary_request"]

MAX_SUMMARY_CHARS = 2400
_log = logging.getLogger("convomem.summarize")


def summary_request(previous: str | None, stale: Sequence[AnyMessage]) -> list[AnyMessage]:
    """The prompt: previous summary plus the messages leaving the working set, as a transcript."""
    lines = [f"{m.type}: {text_of(m)}" for m in stale if text_of(m)]
    body = f"Previous summary:\n{previous or '(none)'}\n\nNew messages:\n" + "\n".join(lines)
    return [SystemMessage(content=SUMMARY_SYSTEM), HumanMessage(content=body)]


def make_summarize(model: BaseChatModel, *, working_set_tokens: int, max_attempts: int = 3) -> Node:
    """`stream=False`: the summary is never shown as it is written, so it is requested in one piece.
    `working_set_tokens` is the budget over which the oldest messages fold."""
    summarizer = with_transient_retry(model.bind(stream=False), max_attempts)

    async def summarize(state: State, runtime: Runtime[Context]) -> Update:
        """Fold messages beyond the working-set budget into the running summary.

        Never fails the turn: when the model cannot answer, nothing folds and the next turn tries again.
        Ids folded earlier but not yet removed (reduce_history did not run, e.g. the turn was superseded)
        are already in the summary: they are not folded again and stay listed for removal.
        """
        pending = list(state.get("summarized_ids") or [])
        already = set(pending)
        working = [m for m in state["messages"] if m.id not in already]
        stale = messages_to_fold(working, working_set_tokens)
        if not stale:
            return {}
        try:
            reply = await summarizer.ainvoke(summary_request(state.get("summary"), stale))
        except Exception as error:
            _log.warning("summary skipped this turn, the model failed: %s", error)
            return {}
        summary = text_of(reply).strip()[:MAX_SUMMARY_CHARS]
        if not summary:
            return {}  # an empty reply must not cost the old summary or the messages it would replace
        return {"summary": summary, "summarized_ids": [*pending, *(m.id for m in stale if m.id)]}

    return summarize
