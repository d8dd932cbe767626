"""`convomem remember`, `edit-entity`, `fact`: memory edited by hand through the CLI on a real database."""

from __future__ import annotations

import json
from typing import Any

import pytest

from graphs.api import Convomem
from graphs.settings import Settings
from tests.e2e.cli_support import Cli, assert_clean_error, assert_ok, with_api
from tests.integration.support import rows

USER = "ada"


def as_json(cli: Cli, *args: str) -> Any:
    return json.loads(assert_ok(cli.run(*args, "--user", USER, "--json")).stdout)


def memory_rows(database_url: str) -> list[tuple[Any, ...]]:
    return rows(database_url, "SELECT prefix, key, value FROM store ORDER BY prefix, key")


def test_remember_edit_entity_and_fact_change_memory_as_the_api_does(cli: Cli) -> None:
    added = as_json(cli, "remember", "org", "Acme Corp", "--context", "the user's employer")
    assert (added["type"], added["value"], added["mentions"]) == ("ORG", "Acme Corp", 1)
    assert added["source_message_ids"][0].startswith("manual:")
    merged = as_json(cli, "remember", "ORG", "ACME Inc.")
    assert (merged["value"], merged["aliases"], merged["mentions"]) == ("Acme Corp", ["ACME Inc."], 2)

    shown = assert_ok(cli.run("remember", "PERSON", "Bob", "--user", USER)).stdout
    assert "Bob" in shown and "PERSON" in shown  # the record, as a table

    edited = as_json(cli, "edit-entity", "acme", "--value", "Globex", "-c", "new name", "-c", "since May")
    assert (edited["value"], edited["mentions"]) == ("Globex", 2)
    assert edited["aliases"] == ["ACME Inc.", "Acme Corp"]
    assert edited["contexts"] == ["new name", "since May"]
    listed = assert_ok(cli.run("entities", "--user", USER)).stdout
    assert "Globex" in listed and "Bob" in listed
    assert "Globex" in assert_ok(cli.run("entity", "Acme Corp", "--user", USER)).stdout  # an alias now

    assert_ok(cli.run("fact", "lives in", "Paris", "--user", USER))
    profile = as_json(cli, "fact", "lives_in", "Berlin")
    assert [v["value"] for v in profile["facts"]["lives_in"]] == ["Paris", "Berlin"]
    assert "Berlin (before: Paris until" in assert_ok(cli.run("profile", "--user", USER)).stdout
    ended = as_json(cli, "fact", "lives_in", "--unset")
    assert all(v["valid_to"] for v in ended["facts"]["lives_in"])
    assert "lives_in" not in assert_ok(cli.run("profile", "--user", USER)).stdout  # no current value


@pytest.mark.parametrize(
    ("args", "words"),
    [
        (("remember", "ORGANISATION", "Acme"), "Unknown entity type"),
        (("remember", "ORG", "}, {"), "no letters or digits"),
        (("edit-entity", "acme"), "Say what to change"),
        (("edit-entity", "Zanzibar", "--value", "Zanzibar City"), "Nothing remembered as 'Zanzibar'"),
        (("edit-entity", "acme", "--value", "Bob", "--type", "PERSON"), "already remembered"),
        (("fact", "lives_in"), "either a VALUE to set or --unset"),
        (("fact", "lives_in", "Paris", "--unset"), "either a VALUE to set or --unset"),
        (("fact", "employer", "--unset"), "No fact 'employer' holds now"),
        (("fact", "lives_in", "p" * 81), "a value of at most 80"),
    ],
    ids=lambda value: value[0] if isinstance(value, tuple) else None,
)
def test_bad_edits_are_one_error_line_exit_1_and_write_nothing(
    cli: Cli, settings: Settings, database_url: str, args: tuple[str, ...], words: str
) -> None:
    async def seed(cm: Convomem) -> None:
        await cm.add_entity("ORG", "Acme", user_id=USER)
        await cm.add_entity("PERSON", "Bob", user_id=USER)
        await cm.set_fact("lives_in", "Lisbon", user_id=USER)

    with_api(settings, seed)
    before = memory_rows(database_url)
    result = cli.run(*args, "--user", USER)
    assert words in assert_clean_error(result)
    assert result.returncode == 1, result.describe()
    assert memory_rows(database_url) == before
