"""The bench's LangMem recipe and its per-node counter, on the real embedded Postgres (no timings)."""

from __future__ import annotations

from pathlib import Path

import psycopg
from langchain_core.messages import AIMessage, BaseMessage
from pydantic import Field

from bench.drivers import BaselineDriver
from bench.fake_model import FakeChatModel
from bench.langmem_recipe import open_recipe
from bench.node_counts import count_nodes
from bench.workload import entities_in, user_message


class RecordingModel(FakeChatModel):
    """The bench model, keeping every request it answers."""

    requests: list[list[BaseMessage]] = Field(default_factory=list)

    def _reply(self, messages: list[BaseMessage], bench_tool: str | None, bench_content: bool) -> AIMessage:
        self.requests.append(list(messages))
        return super()._reply(messages, bench_tool, bench_content)


async def test_a_langmem_recipe_turn_checkpoints_remembers_and_recalls(database_url: str) -> None:
    model = RecordingModel()
    texts = [user_message(1, 1), user_message(1, 2)]
    async with open_recipe(database_url, model) as graph:
        driver = BaselineDriver(graph, model, per_user=True)
        for text in texts:
            await driver.turn("t1", "u1", text)
        assert len(await driver.message_ids("t1")) == 4
    with psycopg.connect(database_url) as conn:
        checkpoints = conn.execute("SELECT count(*) FROM checkpoints WHERE thread_id = 't1'").fetchone()
        memories = conn.execute(
            "SELECT value->>'content' FROM store WHERE prefix = 'memories.u1' ORDER BY created_at"
        ).fetchall()
    assert checkpoints is not None and checkpoints[0] == 10  # input, start, summarize, respond, remember
    expected = ["; ".join(f"{kind}: {name}" for kind, name in entities_in(text)) for text in texts]
    assert [row[0] for row in memories] == expected
    second_reply = next(r for r in model.requests if str(r[-1].content) == texts[1] and len(r) > 2)
    assert expected[0] in str(second_reply[0].content)  # turn 1's memory was searched and shown


async def test_node_counts_split_a_convomem_turn_by_node(
    postgres_root: tuple[Path, str], tmp_path: Path
) -> None:
    _, root_url = postgres_root
    counts = await count_nodes(root_url, tmp_path, warm=1, turns=2)
    rows = {where: (tx, rt, checks) for where, tx, rt, checks in counts.rows()}
    for node in ("load_memory", "extract_entities"):
        assert rows[node][0] > 0 and rows[node][2] == 0  # its own statements; fresh connections go unchecked
    assert rows["respond: checkpoint writes"] == (1.0, 1.0, 0.0)  # the writes, one round trip
    assert counts.server_transactions > 0
    assert all(rt >= tx >= checks for tx, rt, checks in rows.values())
