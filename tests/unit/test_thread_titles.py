"""Thread titles: the first human message on one line, or the running summary's first sentence."""

from __future__ import annotations

from langchain_core.messages import AIMessage, HumanMessage

from checkpoint.ids import validate_id
from checkpoint.thread_info import TITLE_CHARS, new_thread_id, thread_title, title_of


def test_the_first_human_message_titles_a_thread_without_summary() -> None:
    messages = [AIMessage("Hello!", id="a0"), HumanMessage("  Plan my\ntrip  to Lisbon ", id="h1")]
    assert thread_title(messages) == "Plan my trip to Lisbon"


def test_the_summary_first_sentence_wins_once_there_is_one() -> None:
    messages = [HumanMessage("hi", id="h1")]
    assert thread_title(messages, "User plans a trip to Lisbon. They like trams.") == (
        "User plans a trip to Lisbon."
    )


def test_long_titles_are_cut_with_an_ellipsis_and_no_message_means_no_title() -> None:
    title = title_of("word " * 100)
    assert len(title) == TITLE_CHARS and title.endswith("…")
    assert thread_title([AIMessage("only the assistant", id="a")]) == ""


def test_new_thread_ids_are_fresh_and_valid() -> None:
    ids = {new_thread_id() for _ in range(50)}
    assert len(ids) == 50
    assert all(validate_id(i) == i and len(i) == 12 for i in ids)
