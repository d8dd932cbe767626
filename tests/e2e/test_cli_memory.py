"""`convomem entities --type`, `entity`, `profile`, `forget --entity`: the CLI on a real database."""

from __future__ import annotations

from tests.e2e.cli_support import Cli, assert_clean_error, assert_ok

USER = "ada"
TURNS = (
    "My name is Ada. I live in Paris and I work at Acme Corp. with Bob.",
    "I moved to Berlin last spring, and Acme pays for the flat.",
    "Nothing new today, just the weather.",
)


def talk(cli: Cli) -> None:
    for text in TURNS:
        assert_ok(cli.run("chat", "--thread", "t1", "--user", USER, "--message", text))


def test_profile_keeps_the_fact_history_and_entities_filter_by_type(cli: Cli) -> None:
    talk(cli)
    profile = assert_ok(cli.run("profile", "--user", USER)).stdout
    assert "Ada" in profile
    assert "lives_in" in profile
    assert "Berlin (before: Paris until" in profile, profile

    orgs = assert_ok(cli.run("entities", "--user", USER, "--type", "org")).stdout
    assert "Acme" in orgs
    assert "Paris" not in orgs and "Bob" not in orgs, orgs


def test_entity_shows_its_mentions_across_threads_and_forget_entity_removes_only_it(cli: Cli) -> None:
    talk(cli)
    again = "Yesterday Acme Corporation called again [/b] about list[int]."
    assert_ok(cli.run("chat", "--thread", "t2", "--user", USER, "--message", again))
    shown = assert_ok(cli.run("entity", "ACME", "--user", USER)).stdout
    assert "mentions" in shown
    assert shown.count("t1") >= 2 and "t2" in shown, shown  # two messages in t1, one in t2
    assert "Acme pays for the flat" in shown
    assert "[/b] about list[int]" in shown, "stored text is printed as text, not Rich markup"

    assert_ok(cli.run("forget", "--user", USER, "--entity", "acme corp"))
    remaining = assert_ok(cli.run("entities", "--user", USER)).stdout
    assert "Acme" not in remaining
    assert "Bob" in remaining and "Berlin" in remaining
    assert "Berlin" in assert_ok(cli.run("profile", "--user", USER)).stdout


def test_unknown_names_and_bad_types_are_one_clean_error(cli: Cli) -> None:
    talk(cli)
    assert "Nothing remembered" in assert_clean_error(cli.run("entity", "Zanzibar", "--user", USER))
    assert "Nothing remembered" in assert_clean_error(
        cli.run("forget", "--user", USER, "--entity", "Zanzibar")
    )
    assert "entity type" in assert_clean_error(cli.run("entities", "--user", USER, "--type", "a b"))
    assert "entity name" in assert_clean_error(cli.run("entity", " ", "--user", USER))
    assert "no profile yet" in assert_ok(cli.run("profile", "--user", "nobody")).stdout
