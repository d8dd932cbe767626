"""`convomem chat` at a real (pseudo-)terminal: Ctrl-C, Ctrl-D, slash commands, errors that keep the
session, memory work behind the prompt; and memory reviews answered only by what the user said."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from checkpoint.embedded import start_embedded, stop_embedded
from graphs.settings import Settings
from tests.e2e.cli_support import Cli, assert_clean_error, assert_ok, entities, state, thread_rows, wait_until
from tests.e2e.pty_support import CTRL_C, CTRL_D, Terminal
from tests.fake_openai import FakeOpenAIServer

ALICE = "My name is Alice and I live in Paris."
PROMPT = r"you> "


def humans(snapshot: Any) -> list[str]:
    return [m.text for m in snapshot.values["messages"] if m.type == "human"]


def test_interactive_chat_behaves_like_a_chat(
    cli: Cli, fake_model: FakeOpenAIServer, settings: Settings
) -> None:
    with Terminal(cli, "chat", "--thread", "p", "--user", "u") as term:
        term.expect(PROMPT)
        term.line("/help")
        assert "/quit" in term.expect("/pending.*\n.*\n")
        term.expect(PROMPT)
        term.line("/nope")
        term.expect("unknown command /nope")
        term.expect(PROMPT)
        assert fake_model.requests == [], "slash commands never reach the model"

        term.send("half a line")  # Ctrl-C at the prompt drops the line and shows a fresh prompt
        term.send(CTRL_C)
        term.expect(PROMPT)

        fake_model.set_delay("respond", 30)  # Ctrl-C while the reply is on its way cancels only the reply
        term.line("first, cancelled")
        wait_until(
            lambda: len(fake_model.requests_of("respond")) == 1, timeout=30, what="the reply is asked for"
        )
        term.send(CTRL_C)
        assert "next message supersedes it" in term.expect("reply cancelled.*\n")
        term.expect(PROMPT)
        fake_model.set_delay("respond", 0)

        fake_model.set_delay("extract", 8)  # the prompt is back while memory work goes on
        term.line("second message")
        term.expect("Noted: ")
        term.expect("remembering")
        assert "remembered" not in term.expect(PROMPT), "the prompt is back before the memory work ends"
        term.line("third, typed meanwhile")  # waits its turn, never refused
        term.expect("remembered")
        term.expect("Noted: third, typed meanwhile")
        term.expect(PROMPT)
        fake_model.set_delay("extract", 0)

        fake_model.fail_next("respond", 1, status=400)  # a model error is one line; the session goes on
        term.line("this one fails")
        term.expect("error: ")
        term.expect(PROMPT)
        term.line("and this one works")
        term.expect("Noted: and this one works")
        term.expect(PROMPT)
        wait_until(lambda: not state(settings, "p").next, timeout=30, what="the last turn's memory work")

        term.send(CTRL_D)
        assert term.wait() == 0
    snapshot = state(settings, "p")
    assert humans(snapshot)[-3:] == ["second message", "third, typed meanwhile", "and this one works"]
    assert "Traceback" not in term.output


def review_items(cli: Cli, thread: str) -> list[dict[str, Any]]:
    report = json.loads(assert_ok(cli.run("pending", "--thread", thread, "--json")).stdout)
    return list(report["review"]["items"]) if report["review"] else []


def test_review_answers_mean_what_they_say(cli: Cli, settings: Settings, database_url: str) -> None:
    assert_ok(cli.run("chat", "--thread", "r", "--user", "u", "--review", "--message", ALICE))
    items = review_items(cli, "r")
    assert [i["value"] for i in items if i["kind"] == "entity"][:2] == ["Alice", "Paris"]
    shown = assert_ok(cli.run("pending", "--thread", "r")).stdout
    assert "Alice" in shown and "resume --thread r --value" in shown

    before = thread_rows(database_url, "r")
    for refused in ([], ["--value", "true"], ["--value", "yes"], ["--value", "1,99"], ["--value", "0"]):
        assert "approve, reject, the numbers to keep" in assert_clean_error(
            cli.run("resume", "--thread", "r", *refused)
        )
    assert thread_rows(database_url, "r") == before, "a refused answer writes nothing"
    assert entities(settings, "u") == []

    resumed = assert_ok(cli.run("resume", "--thread", "r", "--value", "1"))
    assert {r.value for r in entities(settings, "u")} == {"Alice"}, "1 keeps item 1, it is not `true`"
    assert "remembered: Alice" in resumed.stdout
    assert review_items(cli, "r") == []
    assert "nothing pending" in assert_ok(cli.run("pending", "--thread", "r")).stdout


def test_resume_at_a_terminal_asks_and_confirms(cli: Cli, settings: Settings) -> None:
    assert_ok(cli.run("chat", "--thread", "t", "--user", "u", "--review", "--message", ALICE))
    with Terminal(cli, "resume", "--thread", "t") as term:  # Ctrl-C at the prompt leaves it pending
        term.expect("numbers to keep.*: ")
        term.send(CTRL_C)
        term.expect("interrupted: the question stays pending")
        assert term.wait() == 130
    assert "Traceback" not in term.output
    assert state(settings, "t").interrupts, "Ctrl-C answers nothing"
    with Terminal(cli, "resume", "--thread", "t") as term:
        term.expect("Memory review")
        term.expect("numbers to keep.*: ")
        term.line("")  # Enter alone approves nothing: it asks again
        term.expect("numbers to keep.*: ")
        term.line("2")
        assert "Paris" in term.expect("remembered: .*\n")
        assert term.wait() == 0
    assert {r.value for r in entities(settings, "u")} == {"Paris"}
    assert not state(settings, "t").interrupts


def test_a_review_in_the_session_takes_an_edited_list(cli: Cli, settings: Settings) -> None:
    with Terminal(cli, "chat", "--thread", "s", "--user", "u", "--review") as term:
        term.expect(PROMPT)
        term.line(ALICE)
        term.expect("Memory review")
        term.expect("numbers to keep.*: ")
        term.line("/pending")  # not an answer: refused in one line, asked again
        term.expect("error: .*is not an answer")
        term.expect("numbers to keep.*: ")
        term.line('[{"type": "PERSON", "value": "Ada Lovelace"}]')
        assert "Ada Lovelace (PERSON)" in term.expect("remembered: .*\n")
        term.expect(PROMPT)
        term.line("/pending")
        term.expect("nothing pending")
        term.line("/quit")
        assert term.wait() == 0
    assert {r.value for r in entities(settings, "u")} == {"Ada Lovelace"}


def test_a_database_error_keeps_the_session(
    cli: Cli, settings: Settings, postgres_root: tuple[Path, str]
) -> None:
    data_dir, _ = postgres_root
    with Terminal(cli, "chat", "--thread", "d", "--user", "u") as term:
        term.expect(PROMPT)
        term.line("before the outage")
        term.expect("Noted: before the outage")
        term.expect(PROMPT)
        wait_until(lambda: not state(settings, "d").next, timeout=30, what="the first turn's memory work")
        stop_embedded(data_dir)
        try:
            term.line("during the outage")
            assert "Postgres" in term.expect("error: .*\n"), "one line naming the database"
            term.expect(PROMPT)
        finally:
            start_embedded(data_dir)
        term.line("after the outage")
        term.expect("Noted: after the outage")
        term.expect(PROMPT)
        wait_until(lambda: not state(settings, "d").next, timeout=30, what="the last turn's memory work")
        term.send(CTRL_D)
        assert term.wait() == 0
    assert "Traceback" not in term.output
    assert humans(state(settings, "d")) == ["before the outage", "after the outage"], (
        "the failed turn left nothing"
    )
