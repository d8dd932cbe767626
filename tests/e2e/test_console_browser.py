"""The web console served by `langgraph dev`, in a real headless Chromium: conversations, the branch tree
with replay and fork, the transcript, memory edits, operations, bearer tokens, and the security rules.
Assertions are on the DOM and on the database rows; screenshots go to artifacts/console/."""

from __future__ import annotations

import json
import re
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest
from playwright.sync_api import Page, expect

from graphs.settings import Settings
from tests.e2e.console_support import (
    HOSTILE,
    browser_page,
    create_database,
    drop_database,
    rows,
    seed,
    shot,
)
from tests.e2e.server_support import LangGraphDevServer, assert_log_clean, server_env
from tests.fake_openai import FakeOpenAIServer

TOKENS = "token-for-u1:u1,token-for-u2:u2"


class Served:
    """A seeded database and `langgraph dev` on it."""

    def __init__(self, server: LangGraphDevServer, database_url: str) -> None:
        self.server = server
        self.database_url = database_url
        self.console = f"{server.url}/console/"


def _serve(postgres_root: tuple[Path, str], tmp: Path, **extra: str) -> Iterator[Served]:
    _, root_url = postgres_root
    url = create_database(root_url, "console")
    with FakeOpenAIServer() as model:
        settings = Settings(
            database_url=url,
            openai_base_url=model.base_url,
            openai_api_key="test-key",
            model="fake-model",
            data_dir=tmp / "data",
        )
        seed(settings)
        workdir = tmp / "server"
        workdir.mkdir()
        server = LangGraphDevServer(workdir, server_env(url, model.base_url, tmp / "data", **extra))
        try:
            yield Served(server.start(), url)
        finally:
            server.stop()
            drop_database(root_url, url)
        assert_log_clean(server)


@pytest.fixture(scope="module")
def served(postgres_root: tuple[Path, str], tmp_path_factory: pytest.TempPathFactory) -> Iterator[Served]:
    yield from _serve(postgres_root, tmp_path_factory.mktemp("console"))


@pytest.fixture(scope="module")
def served_with_tokens(
    postgres_root: tuple[Path, str], tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Served]:
    yield from _serve(postgres_root, tmp_path_factory.mktemp("console-tokens"), CONVOMEM_API_TOKENS=TOKENS)


def open_console(page: Page, served: Served, user: str = "u1") -> None:
    page.goto(served.console)
    expect(page.locator("#whoami")).to_contain_text("local user")
    page.select_option("#user", user)
    expect(page.locator("#thread-list li").first).to_have_attribute("data-thread", re.compile(".+"))


def thread_status(served: Served, thread_id: str) -> str | None:
    found = rows(served.database_url, "SELECT status FROM convomem_threads WHERE thread_id = %s", thread_id)
    return found[0][0] if found else None


def entity_values(served: Served, user: str) -> dict[str, dict[str, object]]:
    found = rows(
        served.database_url, "SELECT value FROM store WHERE prefix = %s", f"convomem.users.{user}.entities"
    )
    return {row[0]["value"]: row[0] for row in found}


def test_conversations_timeline_fork_and_transcript(served: Served) -> None:
    outside: list[str] = []
    with browser_page(served.server.url, outside) as page:
        open_console(page, served)
        titles = page.locator("#thread-list li .title")
        expect(titles).to_have_count(2)
        page.fill("#thread-query", "trip")
        expect(titles).to_have_count(1)
        expect(titles.first).to_contain_text("Plan a trip to Porto")
        page.fill("#thread-query", "")
        expect(titles).to_have_count(2)
        shot(page, "conversations")

        page.click('#thread-list li[data-thread="c-home"]')
        checkpoints = rows(
            served.database_url, "SELECT count(*) FROM checkpoints WHERE thread_id = %s", "c-home"
        )[0][0]
        dots = page.locator("#timeline .dot")
        expect(dots).to_have_count(checkpoints)
        transcript = page.locator('#transcript li[data-role="human"]')
        expect(transcript.filter(has_text="I work at Acme")).to_have_count(1)

        # Fork at the second turn's input: a new branch opens in the tree, the thread continues on it.
        second_input = page.locator("#timeline .dot").filter(has_text="· input").first
        second_input.click()
        expect(page.locator("#checkpoint-view")).to_be_visible()
        page.fill("#fork-message", "Actually I moved to Madrid.")
        page.click("#fork-form button")
        expect(page.locator("#run-output")).to_have_attribute("data-state", "done")
        expect(page.locator("#run-output")).to_contain_text("Noted: Actually I moved to Madrid.")
        expect(page.locator('#timeline .dot[data-lane="1"]').first).to_be_visible()
        humans = rows(
            served.database_url,
            "SELECT content FROM convomem_transcript WHERE thread_id = %s AND role = 'human'",
            "c-home",
        )
        assert ("Actually I moved to Madrid.",) in humans

        page.fill("#transcript-query", "Lisbon")
        page.press("#transcript-query", "Enter")
        expect(page.locator("#transcript mark").first).to_have_text("Lisbon")
        shot(page, "timeline")
    assert outside == [], f"the console asked the internet for {outside}"


def test_stored_markup_stays_text_on_every_page(served: Served) -> None:
    outside: list[str] = []
    with browser_page(served.server.url, outside) as page:
        open_console(page, served)
        page.click('#thread-list li[data-thread="c-home"]')
        human = '[data-role="human"]'
        expect(
            page.locator(f"#transcript li{human}").filter(has_text="<script>window.__pwned=1")
        ).to_have_count(1)
        page.locator('#timeline .dot[data-lane="0"]').first.click()  # the original branch's newest
        expect(page.locator(f"#checkpoint-messages li{human}").filter(has_text="<img src=x")).to_have_count(1)
        page.click('#tabs button[data-tab="memory"]')
        page.select_option("#entity-type", "ORG")
        page.fill("#entity-value", "<b onmouseover=x>Bold Co</b>")
        page.click("#entity-submit")
        expect(page.locator("#error")).to_contain_text("markup")  # the CLI's rule: no markup as a name
        page.fill("#entity-value", "Bold Co")
        page.fill("#entity-context", "<img src=x onerror=window.__pwned=3> makes <b>things</b>")
        page.click("#entity-submit")
        expect(page.locator("#entities tbody tr").filter(has_text="<img src=x onerror")).to_have_count(1)
        assert page.evaluate("window.__pwned") is None
        assert page.locator("#transcript img, #entities img, #entities b, script:not([src])").count() == 0
    assert HOSTILE in json.dumps(rows(served.database_url, "SELECT content FROM convomem_transcript"))


def test_memory_is_read_and_fixed_with_the_cli_rules(served: Served) -> None:
    with browser_page(served.server.url, []) as page:
        open_console(page, served)
        page.click('#tabs button[data-tab="memory"]')
        expect(page.locator('#entities tbody tr[data-entity="Acme"]')).to_have_count(1)
        expect(page.locator('#facts tbody tr[data-fact="lives_in"]')).to_contain_text("Lisbon")

        page.select_option("#entity-type", "PERSON")
        page.fill("#entity-value", "Beatriz")
        page.fill("#entity-context", "the user's sister")
        page.click("#entity-submit")
        expect(page.locator('#entities tbody tr[data-entity="Beatriz"]')).to_contain_text("the user's sister")
        assert entity_values(served, "u1")["Beatriz"]["type"] == "PERSON"

        page.locator('#entities tbody tr[data-entity="Beatriz"] button', has_text="Edit").click()
        page.fill("#entity-context", "the user's sister | lives in Porto")
        page.click("#entity-submit")
        expect(page.locator('#entities tbody tr[data-entity="Beatriz"]')).to_contain_text("lives in Porto")
        assert entity_values(served, "u1")["Beatriz"]["contexts"] == ["the user's sister", "lives in Porto"]

        page.fill("#entity-value", "x" * 200)  # longer than the CLI allows: the CLI's line, nothing stored
        page.click("#entity-submit")
        expect(page.locator("#error")).to_be_visible()
        assert not any(len(v) > 120 for v in entity_values(served, "u1"))

        page.fill("#entity-value", "")
        page.fill("#fact-attribute", "lives_in")
        page.fill("#fact-value", "Porto")
        page.click("#fact-form button")
        lives_in = page.locator('#facts tbody tr[data-fact="lives_in"]')
        expect(lives_in).to_contain_text("Porto")
        expect(lives_in.locator("td").nth(3)).to_contain_text("Lisbon")  # the history keeps the old value

        page.locator('#entities tbody tr[data-entity="Acme"] button', has_text="Delete").click()
        expect(page.locator('#entities tbody tr[data-entity="Acme"]')).to_have_count(0)
        assert "Acme" not in entity_values(served, "u1")
        shot(page, "memory")


def test_operations_archive_export_and_delete(served: Served, tmp_path: Path) -> None:
    with browser_page(served.server.url, []) as page:
        open_console(page, served)
        page.click('#tabs button[data-tab="ops"]')
        runs = rows(served.database_url, "SELECT count(*) FROM convomem_run_records WHERE user_id = 'u1'")[0][
            0
        ]
        expect(page.locator('#ops-summary [data-number="turns"] dd')).to_have_text(str(runs))
        expect(page.locator('#charts [data-chart="turn time (s)"] polyline')).to_have_count(2)
        expect(page.locator("#health")).to_have_attribute("data-status", "healthy")
        expect(page.locator("#health")).to_contain_text("database healthy")
        shot(page, "operations")

        page.click('#tabs button[data-tab="threads"]')
        page.click('#thread-list li[data-thread="c-trip"]')
        with page.expect_download() as download:
            page.click("#export")
        saved = tmp_path / "c-trip.json"
        download.value.save_as(saved)
        exported = json.loads(saved.read_text())
        assert exported["thread_id"] == "c-trip" and exported["format"] == "convomem.thread"

        page.click("#archive")
        expect(page.locator("#archive")).to_have_text("Unarchive")
        assert thread_status(served, "c-trip") == "archived"
        page.click("#delete")
        page.click("#delete-with")
        expect(page.locator("#thread-view")).to_be_hidden()  # hidden once the server answered
        assert thread_status(served, "c-trip") is None
        in_transcript = (
            "SELECT count(*) FROM convomem_transcript WHERE thread_id = 'c-trip' AND role = 'human'"
        )
        assert rows(served.database_url, in_transcript)[0][0] == 0

        page.set_input_files("#import-file", str(saved))  # and back: the conversation continues from there
        expect(page.locator("#thread-view")).to_be_visible()
        expect(page.locator("#thread-title")).to_have_text("Plan a trip to Porto with Beatriz.")
        assert thread_status(served, "c-trip") == "active"
        assert rows(served.database_url, in_transcript)[0][0] == 1


class _Attacker(BaseHTTPRequestHandler):
    """Another site: its page posts to the console's API as soon as it loads, as a form and by fetch."""

    target = ""

    def do_GET(self) -> None:
        page = f"""<!doctype html><body>
<form id="f" method="POST" action="{self.target}/console/api/threads/c-home/archive" enctype="text/plain">
<input name='{{"archived": true, "x": "' value='"}}'></form>
<script>
fetch("{self.target}/console/api/threads/c-home/delete", {{method: "POST", mode: "no-cors",
  headers: {{"Content-Type": "text/plain"}}, body: JSON.stringify({{with_transcript: true}})}})
  .finally(() => {{ document.title = "sent"; document.getElementById("f").submit(); }});
</script></body>"""
        body = page.encode()
        self.send_response(200)
        self.send_header("Content-Type", "text/html")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args: object) -> None:
        pass


def test_a_page_from_another_site_cannot_change_anything(served: Served) -> None:
    _Attacker.target = served.server.url
    attacker = ThreadingHTTPServer(("127.0.0.1", 0), _Attacker)
    threading.Thread(target=attacker.serve_forever, daemon=True).start()
    try:
        with browser_page(served.server.url, []) as page:
            page.context.unroute("**/*")
            with page.expect_response(lambda r: r.url.endswith("/archive")) as archive:
                page.goto(f"http://127.0.0.1:{attacker.server_address[1]}/")
            assert archive.value.status == 403
    finally:
        attacker.shutdown()
    assert thread_status(served, "c-home") == "active"
    assert rows(served.database_url, "SELECT count(*) FROM checkpoints WHERE thread_id = 'c-home'")[0][0] > 0


def test_a_token_sees_only_its_own_user(served_with_tokens: Served) -> None:
    served = served_with_tokens
    with browser_page(served.server.url, []) as page:
        page.goto(served.console)
        expect(page.locator("#signin")).to_be_visible()
        page.fill("#token", "token-for-u1")
        page.click("#signin button")
        expect(page.locator("#whoami")).to_have_text("signed in as u1")
        expect(page.locator("#user-picker")).to_be_hidden()
        expect(page.locator("#thread-list li")).to_have_count(2)
        assert page.locator('#thread-list li[data-thread="c-bob"]').count() == 0
        status = page.evaluate(
            """async () => (await fetch("api/threads/c-bob", {headers: {Authorization:
               "Bearer " + sessionStorage.getItem("convomem-token")}})).status"""
        )
        assert status == 404
        page.click('#tabs button[data-tab="memory"]')
        expect(page.locator('#entities tbody tr[data-entity="Acme"]')).to_have_count(1)
        assert page.locator('#entities tbody tr[data-entity="Globex"]').count() == 0
        shot(page, "signed-in")
